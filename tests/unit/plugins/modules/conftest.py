"""Make this working tree importable as ``ansible_collections.fleetsafe.backup``.

Unit tests import module_utils by their collection path (ECOSYSTEM C9), the
same way modules do on a host.  The link lives in build/collections, the
directory `make demo` also uses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
COLLECTIONS = ROOT / "build" / "collections"


def _link_collection() -> None:
    ns = COLLECTIONS / "ansible_collections" / "fleetsafe"
    ns.mkdir(parents=True, exist_ok=True)
    link = ns / "backup"
    if not link.exists():
        tmp = ns / f".backup.{os.getpid()}"
        tmp.symlink_to(ROOT)
        os.replace(tmp, link)
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))


_link_collection()
