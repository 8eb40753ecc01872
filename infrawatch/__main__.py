"""`python -m infrawatch`: the command-line entry point."""

from infrawatch.cli.main import main

raise SystemExit(main())
