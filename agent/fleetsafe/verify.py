"""Verify driver (VER-CHECKSUM, ENC-TEST) over ``repo.check``.

Contract: ``run_verify(repo, read_data)`` returns the document of
``fleetsafe verify --json`` (docs/cli.md): ``status`` is ``ok`` or
``damaged``; ``problems`` names every damaged, missing or unauthenticated
object as ``{"object", "problem"}``.  The CLI maps ``damaged`` to exit 5.

``read_data`` is a fraction 0..1 of blobs to decrypt and authenticate (1.0 =
``--read-data``).  The structural check (pack names = SHA-256 of their bytes,
index entries point into existing packs, every snapshot's trees and chunks
indexed) always runs; what it covers is the repository layer's business.
Problems the repository met while loading its index are reported too, so a
damaged index object is never silently skipped.

Notes (e.g. packs no index names, left by an interrupted backup) are not
damage: they are listed under ``notes`` and do not change the status.
"""

from __future__ import annotations

import time
from typing import Any

from fleetsafe.backup import iso_utc

#: keys of repo.check()'s result copied into the verify document when present
_COUNTERS = ("packs_checked", "blobs_checked", "bytes_read", "snapshots_checked", "index_objects_checked", "trees_checked")


def run_verify(repo: Any, read_data: float) -> dict[str, Any]:
    if not 0.0 <= read_data <= 1.0:
        raise ValueError(f"read_data must be a fraction 0..1, got {read_data}")
    t0 = time.time()
    seen: list[dict[str, str]] = []

    def on_problem(problem: Any) -> None:
        seen.append(_as_problem(problem))

    raw = repo.check(read_data=read_data, on_problem=on_problem)
    raw = raw if isinstance(raw, dict) else {}
    problems: list[dict[str, str]] = []
    for p in list(getattr(repo, "load_problems", []) or []) + list(raw.get("problems") or []) + seen:
        item = _as_problem(p)
        if item not in problems:
            problems.append(item)
    t1 = time.time()
    doc: dict[str, Any] = {
        "status": "damaged" if problems else "ok",
        "read_data_percent": round(read_data * 100, 3),
        "start": iso_utc(t0),
        "end": iso_utc(t1),
        "duration_seconds": round(t1 - t0, 3),
        "problems": problems,
        "notes": [n for n in raw.get("notes") or [] if isinstance(n, dict)],
    }
    for key in _COUNTERS:
        if key in raw:
            doc[key] = raw[key]
    doc.setdefault("packs_checked", 0)
    doc.setdefault("blobs_checked", 0)
    doc.setdefault("bytes_read", 0)
    return doc


def _as_problem(p: Any) -> dict[str, str]:
    if isinstance(p, dict):
        obj = p.get("object") or p.get("name") or p.get("pack") or "?"
        what = p.get("problem") or p.get("error") or p.get("message") or "problem"
        return {"object": str(obj), "problem": str(what)}
    if isinstance(p, (tuple, list)) and len(p) == 2:
        return {"object": str(p[0]), "problem": str(p[1])}
    return {"object": "?", "problem": str(p)}
