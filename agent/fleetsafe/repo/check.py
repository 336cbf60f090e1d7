"""Repository check: VER-CHECKSUM (structure, hashes) and ENC-TEST (decrypt samples).

Contract: ``run_check(repo, read_data, on_problem)`` never raises for damage
it finds; it reports each problem as ``{"object": <object name>, "problem":
<text>}`` (also passed to ``on_problem`` as found) and returns::

    {"status": "ok" | "damaged", "packs_checked", "blobs_checked", "bytes_read",
     "snapshots_checked", "index_objects_checked", "trees_checked",
     "problems": [...], "notes": [{"object", "note"}], "unreferenced_packs"}

Structural part (always):

* every object under ``packs/`` is named ``packs/<2 hex>/<sha256 hex>`` and
  its bytes hash to that name: one flipped byte anywhere is found and the pack
  named, without keys;
* every index object's bytes hash to its name and it decrypts;
* every pack an index names exists with the recorded size, and every index
  entry lies inside it;
* every snapshot's bytes hash to its name, it decrypts, its tree blobs are
  indexed and readable, and every content blob its tree names is indexed.

Read-data part (``read_data`` = fraction of packs, 0..1): for each selected
pack, authenticate the trailer, decrypt + authenticate + decompress every
blob and recompute its keyed id; the trailer must agree with the index.

Packs no index names are **notes**, not damage: they are what a crash between
a pack upload and its index leaves (docs/format.md, "Crash safety").
"""

from __future__ import annotations

import math
import random as _random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fleetsafe import crypto
from fleetsafe.errors import FleetsafeError
from fleetsafe.repo.index import Index, PackRecord
from fleetsafe.repo.pack import PACK_PREFIX, decrypt_blob, pack_name, read_trailer
from fleetsafe.repo.tree import decode_stream

if TYPE_CHECKING:
    from fleetsafe.repo.repository import Repository

_PACK_NAME = re.compile(r"^packs/([0-9a-f]{2})/([0-9a-f]{64})$")
_HASH_NAME = re.compile(r"^(index|snapshots)/([0-9a-f]{64})$")


def run_check(repo: Repository, read_data: float = 0.0,
              on_problem: Callable[[dict[str, str]], Any] | None = None,
              *, rng: _random.Random | None = None) -> dict[str, Any]:
    backend = repo.backend
    problems: list[dict[str, str]] = []
    notes: list[dict[str, str]] = []
    counters = {"packs_checked": 0, "blobs_checked": 0, "bytes_read": 0, "snapshots_checked": 0,
                "index_objects_checked": 0, "trees_checked": 0}

    def problem(obj: str, text: str) -> None:
        item = {"object": obj, "problem": text}
        problems.append(item)
        if on_problem is not None:
            on_problem(item)

    fraction = 1.0 if read_data is True else float(read_data or 0.0)
    fraction = min(max(fraction, 0.0), 1.0)

    # 1. index objects -> a fresh index (not the in-memory one, which may hold unflushed state)
    index = Index()
    for info in backend.list("index/"):
        if not _HASH_NAME.match(info.name):
            problem(info.name, "unexpected object name under index/")
            continue
        try:
            counters["bytes_read"] += info.size
            counters["index_objects_checked"] += 1
            for record in repo.read_index_object(info.name):
                index.add_pack(record)
                _check_record_consistent(index, record, info.name, problem)
        except FleetsafeError as exc:
            problem(info.name, f"index object unreadable: {exc}")

    # 2. packs: names and hashes (keyless), optional read-data
    listed = {i.name: i.size for i in backend.list(PACK_PREFIX)}
    pack_names = [n for n in listed if _PACK_NAME.match(n)]
    for n in listed:
        if not _PACK_NAME.match(n):
            problem(n, "unexpected object name under packs/")
    selected: set[str] = set()
    if fraction >= 1.0:
        selected = set(pack_names)
    elif fraction > 0.0 and pack_names:
        k = max(1, math.ceil(fraction * len(pack_names)))
        selected = set((rng or _random.SystemRandom()).sample(sorted(pack_names), k))
    for name in pack_names:
        m = _PACK_NAME.match(name)
        assert m is not None
        sha = m.group(2)
        if m.group(1) != sha[:2]:
            problem(name, "pack is stored under the wrong directory")
        try:
            data = backend.load(name)
        except FleetsafeError as exc:
            problem(name, f"pack unreadable: {exc}")
            continue
        counters["packs_checked"] += 1
        counters["bytes_read"] += len(data)
        actual = crypto.sha256_hex(data)
        if actual != sha:
            problem(name, f"SHA-256 of the pack bytes is {actual}, not its name: the pack is damaged")
        if sha not in index.packs:
            notes.append({"object": name, "note": "pack is in no index (left by an interrupted run; harmless)"})
        elif index.packs[sha] != len(data):
            problem(name, f"size is {len(data)} bytes, the index says {index.packs[sha]}")
        if name in selected:
            _read_pack(repo, name, sha, data, index, problem, counters)

    # 3. every indexed pack exists
    for sha in index.packs:
        name = pack_name(sha)
        if name not in listed:
            problem(name, "pack named by the index is missing")

    # 4. snapshots: trees and content referenced are indexed (and, for trees, readable)
    trees_ok: dict[str, bool] = {}
    for info in backend.list("snapshots/"):
        if not _HASH_NAME.match(info.name):
            problem(info.name, "unexpected object name under snapshots/")
            continue
        counters["snapshots_checked"] += 1
        counters["bytes_read"] += info.size
        try:
            manifest = repo._read_snapshot(info.name)
        except FleetsafeError as exc:
            problem(info.name, f"snapshot unreadable: {exc}")
            continue
        tree_ids = manifest.get("tree")
        if not isinstance(tree_ids, list):
            problem(info.name, "manifest has no tree list")
            continue
        missing = [t for t in tree_ids if not isinstance(t, str) or _blob(t) not in index]
        if missing:
            problem(info.name, f"{len(missing)} tree blob(s) are in no index, first {missing[0]}")
            continue
        key = ",".join(tree_ids)
        if key in trees_ok:
            continue
        trees_ok[key] = True
        counters["trees_checked"] += 1
        try:
            absent = 0
            first = ""
            for entry in decode_stream(_load_indexed(repo, index, t) for t in tree_ids):
                for c in entry.get("content") or ():
                    if _blob(c) not in index:
                        absent += 1
                        first = first or f"{c} (file {entry['path']!r})"
            if absent:
                trees_ok[key] = False
                problem(info.name, f"{absent} content blob(s) are in no index, first {first}")
        except FleetsafeError as exc:
            trees_ok[key] = False
            problem(info.name, f"tree unreadable: {exc}")

    for p in repo.load_problems:
        if p not in problems and not any(q["object"] == p["object"] for q in problems):
            problem(p["object"], p["problem"])

    return {
        "status": "damaged" if problems else "ok",
        **counters,
        "problems": problems,
        "notes": notes,
        "unreferenced_packs": len(notes),
    }


def _blob(hexid: Any) -> bytes:
    try:
        return bytes.fromhex(hexid) if isinstance(hexid, str) else b""
    except ValueError:
        return b""


def _load_indexed(repo: Repository, index: Index, tree_id: str) -> bytes:
    """A blob via the checked index (not the repository's in-memory one)."""
    ie = index.get(_blob(tree_id))
    assert ie is not None  # callers checked presence
    name = pack_name(ie.pack)
    data = repo.backend.load(name, ie.entry.offset, ie.entry.length)
    return decrypt_blob(repo._pack_dk(ie.pack), ie.entry, data, repo._id_key, f"tree blob {tree_id} in {name}")


def _check_record_consistent(index: Index, record: PackRecord, obj: str,
                             problem: Callable[[str, str], None]) -> None:
    for e in record.entries:
        if e.offset + e.length > record.size or e.length < crypto.TAG_SIZE:
            problem(obj, f"entry for blob {e.blob_id.hex()} lies outside pack {pack_name(record.pack)}")


def _read_pack(repo: Repository, name: str, sha: str, data: bytes, index: Index,
               problem: Callable[[str, str], None], counters: dict[str, int]) -> None:
    """ENC-TEST: authenticate and decrypt every blob of one pack; compare with the index."""
    try:
        dk, entries = read_trailer(data, repo._kek, name)
    except FleetsafeError as exc:
        problem(name, f"pack trailer: {exc}")
        return
    bad = 0
    first = ""
    for e in entries:
        try:
            decrypt_blob(dk, e, data[e.offset:e.offset + e.length], repo._id_key, f"blob {e.blob_id.hex()}")
            counters["blobs_checked"] += 1
        except FleetsafeError as exc:
            bad += 1
            first = first or str(exc)
        ie = index.get(e.blob_id)
        if ie is not None and ie.pack == sha and ie.entry != e:
            problem(name, f"index entry of blob {e.blob_id.hex()} disagrees with the pack trailer")
    if bad:
        problem(name, f"{bad} of {len(entries)} blob(s) fail authentication or id check, first: {first}")
