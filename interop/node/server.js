'use strict';
// grpc-js interop server for greeter's tests.
//
//   node server.js PORT        (PORT 0: any free port)
//
// Serves greet.Greeter on 127.0.0.1:PORT (plaintext) and prints `listening on 127.0.0.1:<port>`
// on stdout once bound. SIGTERM / SIGINT: graceful shutdown (forced after 2 s), exit 0.
//
// Behaviour (the same as greeter's service and tests/support/peers.py's grpcio server):
//   SayHello        -> "Hello " + name
//   LotsOfReplies   -> `count` replies, the i-th (from 1) "Hello NAME #i"; count 0: none, OK
//   LotsOfGreetings -> one reply "Hello " + names joined with ", " in arrival order
//   BidiHello       -> one reply "Hello " + name per request, as each arrives
// Every RPC copies the request metadata key `x-echo` (if present) into its trailing metadata.
// Messages up to 8 MiB are accepted and sent (grpc-js defaults: 4 MiB receive).

const { grpc, Greeter } = require('./greet');

const EIGHT_MIB = 8 * 1024 * 1024;
const FORCE_SHUTDOWN_MS = 2000;

// Trailing metadata for a call: its `x-echo` values, if the client sent any.
function echoTrailers(call) {
  const trailers = new grpc.Metadata();
  for (const value of call.metadata.get('x-echo')) {
    trailers.add('x-echo', value);
  }
  return trailers;
}

const greeter = {
  sayHello(call, callback) {
    callback(null, { message: `Hello ${call.request.name}` }, echoTrailers(call));
  },

  lotsOfReplies(call) {
    const { name, count } = call.request;
    for (let i = 1; i <= count; i += 1) {
      call.write({ message: `Hello ${name} #${i}` });
    }
    call.end(echoTrailers(call));
  },

  lotsOfGreetings(call, callback) {
    const names = [];
    call.on('data', (request) => names.push(request.name));
    call.on('end', () => {
      callback(null, { message: `Hello ${names.join(', ')}` }, echoTrailers(call));
    });
  },

  bidiHello(call) {
    call.on('data', (request) => call.write({ message: `Hello ${request.name}` }));
    call.on('end', () => call.end(echoTrailers(call)));
  },
};

function main(argv) {
  const port = Number(argv[0]);
  if (argv.length !== 1 || !Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write('usage: node server.js PORT\n');
    process.exit(2);
  }
  const server = new grpc.Server({
    'grpc.max_receive_message_length': EIGHT_MIB,
    'grpc.max_send_message_length': EIGHT_MIB,
  });
  server.addService(Greeter.service, greeter);
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
    if (err) {
      process.stderr.write(`server.js: bind failed: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`listening on 127.0.0.1:${bound}\n`);
  });

  const shutdown = () => {
    setTimeout(() => {
      server.forceShutdown();
      process.exit(0);
    }, FORCE_SHUTDOWN_MS).unref();
    server.tryShutdown(() => process.exit(0));
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main(process.argv.slice(2));
