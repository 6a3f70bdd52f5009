"""`python -m greeter ...`: the command-line entry point (see greeter.cli)."""

from greeter.cli import main

raise SystemExit(main())
