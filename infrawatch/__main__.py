"""`python -m infrawatch`: the command-line entry point."""

from infrawatch.cli import main

raise SystemExit(main())
