"""Shared fixtures. Feature-specific fixtures live beside their tests (tests/support_*.py)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_infrawatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees INFRAWATCH_* settings from the shell that runs the suite."""
    for key in list(os.environ):
        if key.startswith("INFRAWATCH_"):
            monkeypatch.delenv(key)
