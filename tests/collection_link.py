"""Make this working tree importable as ``ansible_collections.fleetsafe.backup``.

Unit tests import plugins and module_utils by their collection path
(ECOSYSTEM C9), as modules do on a host, and ansible-playbook finds the
collection through ``ANSIBLE_COLLECTIONS_PATH``.  Both use one link,
``build/collections/ansible_collections/fleetsafe/backup`` -> the repo root:
the directory `make demo` uses too (TESTBED §2: no copy that can go stale).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / "build" / "collections"


def link_collection() -> Path:
    """Create the link if needed (atomically: test processes race) and return the collections dir."""
    ns = COLLECTIONS / "ansible_collections" / "fleetsafe"
    ns.mkdir(parents=True, exist_ok=True)
    link = ns / "backup"
    if not link.exists():
        tmp = ns / f".backup.{os.getpid()}"
        tmp.symlink_to(ROOT)
        os.replace(tmp, link)
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
    return COLLECTIONS
