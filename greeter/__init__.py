"""greeter: an inspectable pure-Python gRPC stack (sans-IO core on h2, asyncio server)."""
