"""Make the repo importable as ``ansible_collections.fleetsafe.backup`` (as ansible-test does)."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _collection_root() -> str:
    # ansible-test would run us from .../ansible_collections/fleetsafe/backup; plain
    # pytest runs from the repo, so give it a temp tree with that shape (a symlink).
    for entry in sys.path:
        if os.path.isdir(os.path.join(entry, "ansible_collections", "fleetsafe", "backup", "plugins")):
            return entry
    root = tempfile.mkdtemp(prefix="fleetsafe-coll-")
    os.makedirs(os.path.join(root, "ansible_collections", "fleetsafe"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "fleetsafe", "backup"))
    sys.path.insert(0, root)
    return root


COLLECTIONS_ROOT = _collection_root()


@pytest.fixture(scope="session")
def collections_root() -> str:
    """The directory to put in ANSIBLE_COLLECTIONS_PATH."""
    return COLLECTIONS_ROOT
