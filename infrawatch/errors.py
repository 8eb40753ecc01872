"""Errors that end the agent with a clear message instead of a traceback."""

from __future__ import annotations


class StartupError(Exception):
    """A resource the agent needs could not be opened (a port in use, a path not writable)."""
