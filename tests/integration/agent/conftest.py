"""Fixtures of the agent CLI tests (helpers live in cli_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import Agent, make_agent


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    yield make_agent(tmp_path / "host")
