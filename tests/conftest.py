"""Shared fixtures.  Real services (SFTP, S3, SMTP) live in tests/services.py."""

from __future__ import annotations

import pytest
from collection_link import link_collection

pytest_plugins = ["services"]

COLLECTIONS_ROOT = link_collection()


@pytest.fixture(scope="session")
def collections_root() -> str:
    """The directory to put in ANSIBLE_COLLECTIONS_PATH (holds ansible_collections/fleetsafe/backup)."""
    return str(COLLECTIONS_ROOT)
