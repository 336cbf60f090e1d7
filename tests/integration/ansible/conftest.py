"""Fixtures for tests that run the collection's roles with real ansible-playbook."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness


@pytest.fixture(scope="session")
def wheels() -> Path:
    return harness.ensure_wheels()


@pytest.fixture(scope="session")
def recovery_pub(tmp_path_factory) -> Path:
    return harness.make_recovery_key(tmp_path_factory.mktemp("recovery"))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A temporary root for one converged agent; the data to back up is real files."""
    root = tmp_path_factory.mktemp("agent-root")
    data = root / "data"
    shutil.copytree("/usr/share/common-licenses", data / "licenses", symlinks=True)
    (data / "notes.txt").write_text("fleetsafe role test\n")
    return root
