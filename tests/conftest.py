"""Shared fixtures. Feature-specific fixtures live beside their tests (tests/support_*.py)."""

from __future__ import annotations

import os

import pytest

# Defined here once, not imported per module, so the whole run shares one server.
from tests.support_moto import moto_session

__all__ = ["moto_session"]  # a fixture, used by name


@pytest.fixture(autouse=True)
def _clean_infrawatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees INFRAWATCH_* settings from the shell that runs the suite."""
    for key in list(os.environ):
        if key.startswith("INFRAWATCH_"):
            monkeypatch.delenv(key)
