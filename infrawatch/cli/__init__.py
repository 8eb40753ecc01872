"""The command line: `infrawatch init | check | run | query`."""

from infrawatch.cli.main import main

__all__ = ["main"]
