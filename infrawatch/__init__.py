"""infrawatch: a light asyncio monitoring agent."""

__version__ = "0.1.0"
