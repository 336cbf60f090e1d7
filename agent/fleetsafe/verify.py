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

import re
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


_PACK_OBJECT = re.compile(r"^packs/[0-9a-f]{2}/([0-9a-f]{64})$")


def run_repair(repo: Any, *, dry_run: bool = False) -> dict[str, Any]:
    """``fleetsafe repair``: read-data check, then quarantine every damaged pack (docs/cli.md).

    A pack with any problem (hash mismatch, failed authentication, unreadable,
    wrong size, named by the index but missing) is copied to
    ``quarantine/<sha>`` and removed from ``packs/`` and from the index
    (``Repository.quarantine_packs``); packs no index names are then indexed
    from their trailers (``rebuild_index``).  Blob ids are content ids, so the
    next backup stores the lost blobs again from the live files, which makes
    the snapshots listed in ``incomplete_snapshots`` restorable again.
    Caller holds the exclusive repository lock (unless ``dry_run``).
    """
    t0 = time.time()
    raw = repo.check(read_data=1.0)
    problems = [_as_problem(p) for p in list(getattr(repo, "load_problems", []) or []) + list(raw.get("problems") or [])]
    damaged: dict[str, list[str]] = {}
    other: list[dict[str, str]] = []
    for p in problems:
        m = _PACK_OBJECT.match(p["object"])
        if m:
            damaged.setdefault(m.group(1), []).append(p["problem"])
        elif p not in other:
            other.append(p)
    result: dict[str, Any] = {"quarantined": [], "index_objects_replaced": 0}
    rebuilt: dict[str, Any] = {"packs_added": 0, "blobs_added": 0, "problems": []}
    if damaged and not dry_run:
        result = repo.quarantine_packs(damaged)
        rebuilt = repo.rebuild_index()
    elif damaged:
        repo.drop_packs_in_memory(set(damaged))
    incomplete = repo.incomplete_snapshots()
    # Snapshot problems that only say "blobs are in no index" are what quarantining leaves: the
    # backup heals them.  Anything else (a damaged index or snapshot object) is not repaired here.
    incomplete_ids = {s["id"] for s in incomplete}
    unrepaired = [p for p in other if not (p["object"].startswith("snapshots/")
                                           and p["object"].split("/", 1)[1] in incomplete_ids
                                           and "in no index" in p["problem"])]
    unrepaired += [_as_problem(p) for p in rebuilt.get("problems") or []]
    t1 = time.time()
    if unrepaired:
        status = "damaged"
    elif damaged or incomplete:
        status = "would_repair" if dry_run and damaged else "repaired" if damaged else "incomplete"
    else:
        status = "ok"
    return {
        "status": status,
        "dry_run": dry_run,
        "start": iso_utc(t0),
        "end": iso_utc(t1),
        "duration_seconds": round(t1 - t0, 3),
        "packs_checked": raw.get("packs_checked", 0),
        "blobs_checked": raw.get("blobs_checked", 0),
        "damaged_packs": [{"object": f"packs/{sha[:2]}/{sha}", "problems": texts,
                           "quarantine": None if dry_run else f"quarantine/{sha}"}
                          for sha, texts in sorted(damaged.items())],
        "quarantined": list(result.get("quarantined") or []),
        "index_objects_replaced": result.get("index_objects_replaced", 0),
        "packs_reindexed": rebuilt.get("packs_added", 0),
        "incomplete_snapshots": incomplete,
        "heal": ("run `fleetsafe backup --type full`: blobs are content ids, so the backup stores the lost "
                 "data again from the live files and these snapshots become restorable again "
                 "(data whose live file changed or is gone cannot come back)") if incomplete else None,
        "unrepaired": unrepaired,
    }
