"""The blob index: which pack holds which blob, where (format v1).

An index object (``index/<sha256>``, sealed as in ``objects``) carries the
entries of the packs written since the previous index object::

    {"v": 1,
     "packs": [{"id": "<sha256 hex of the pack>", "size": <pack bytes>,
                "blobs": [["<blob id hex>", type, compression, n, offset, length, raw_length], ...]},
               ...]}

The in-memory ``Index`` is the union of every index object.  Invariant kept
by the writer: a pack is stored before any index object names it, and an index
object before any snapshot that needs it (crash safety: a crash can leave
packs no index names, never an index naming a missing pack).  If two packs
hold the same blob (a crash re-upload, two writers), either copy serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fleetsafe.errors import FormatError
from fleetsafe.repo.pack import BLOB_TYPES, PackEntry

INDEX_VERSION = 1


@dataclass(frozen=True)
class IndexEntry:
    __slots__ = ("entry", "pack")
    pack: str  # sha256 hex of the pack
    entry: PackEntry


@dataclass
class PackRecord:
    pack: str
    size: int
    entries: list[PackEntry] = field(default_factory=list)


class Index:
    """Blob id -> location, plus pack sizes.  Not thread-safe."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, IndexEntry] = {}
        self.packs: dict[str, int] = {}  # pack sha hex -> size

    def __len__(self) -> int:
        return len(self._blobs)

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._blobs

    def get(self, blob_id: bytes) -> IndexEntry | None:
        return self._blobs.get(blob_id)

    def add_pack(self, record: PackRecord) -> None:
        self.packs[record.pack] = record.size
        for e in record.entries:
            # Keep the first location seen; duplicates are harmless copies.
            self._blobs.setdefault(e.blob_id, IndexEntry(record.pack, e))

    def items(self) -> Iterator[tuple[bytes, IndexEntry]]:
        return iter(self._blobs.items())


def index_payload(records: list[PackRecord]) -> dict[str, Any]:
    return {
        "v": INDEX_VERSION,
        "packs": [
            {
                "id": r.pack,
                "size": r.size,
                "blobs": [[e.blob_id.hex(), e.blob_type, e.comp, e.n, e.offset, e.length, e.raw_length]
                          for e in r.entries],
            }
            for r in records
        ],
    }


def _int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise FormatError(what=what, expected="a non-negative integer", got=repr(v))
    return v


def parse_index(obj: Any, what: str) -> list[PackRecord]:
    """Strictly validate an index payload."""
    if not isinstance(obj, dict) or obj.get("v") != INDEX_VERSION or not isinstance(obj.get("packs"), list):
        raise FormatError(what=what, expected=f'{{"v": {INDEX_VERSION}, "packs": [...]}}', got=str(obj)[:80])
    records: list[PackRecord] = []
    for p in obj["packs"]:
        if not isinstance(p, dict) or not isinstance(p.get("id"), str) or len(p["id"]) != 64 \
                or not isinstance(p.get("blobs"), list):
            raise FormatError(what=f"{what} pack record", expected="id (64 hex), size, blobs", got=str(p)[:80])
        try:
            int(p["id"], 16)
        except ValueError as exc:
            raise FormatError(what=f"{what} pack id", expected="hex", got=p["id"]) from exc
        rec = PackRecord(p["id"].lower(), _int(p.get("size"), f"{what} pack size"))
        for b in p["blobs"]:
            if not isinstance(b, list) or len(b) != 7 or not isinstance(b[0], str) or len(b[0]) != 64:
                raise FormatError(what=f"{what} blob entry", expected="[id, type, comp, n, offset, length, raw]",
                                  got=str(b)[:80])
            try:
                bid = bytes.fromhex(b[0])
            except ValueError as exc:
                raise FormatError(what=f"{what} blob id", expected="hex", got=b[0]) from exc
            btype = _int(b[1], f"{what} blob type")
            if btype not in BLOB_TYPES:
                raise FormatError(what=f"{what} blob type", expected=sorted(BLOB_TYPES), got=btype)
            rec.entries.append(PackEntry(bid, btype, *(_int(x, f"{what} blob field") for x in b[2:])))
        records.append(rec)
    return records
