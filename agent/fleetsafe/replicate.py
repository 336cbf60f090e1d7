"""Replication of immutable repository objects between targets (LOC-OFFSITE, LOC-CLOUD).

``replicate(src, dst)`` copies every object of the given prefixes that ``src``
has and ``dst`` lacks.  It needs no keys: it works on stored bytes only.

Invariants:

* **Order.**  ``keys/`` and ``config`` first, then ``packs/``, ``index/``,
  and ``snapshots/`` last (whatever order the caller lists them in), so at
  every moment a replica only references objects it already holds: an
  interrupted run leaves at worst unreferenced packs, never a snapshot
  whose packs are missing.
* **No spreading of damage.**  ``packs/``, ``index/`` and ``snapshots/``
  objects are content-addressed: the last name component is the sha256 of
  the stored bytes (docs/format.md).  Each is hashed before upload; a source
  object that does not match its name is *not* copied but reported under
  ``corrupt``.  After any corrupt object, the later phases of this run are
  held back (``held``): a replica must not receive snapshots that may
  reference the pack it could not get.  The next run, after the source is
  repaired, catches up.
* **Repair of damaged copies.**  A content-addressed object present on
  ``dst`` with a different size is a damaged copy (it cannot be another
  version: the name is the hash); the verified source copy replaces it
  (``repaired``).  ``config`` and ``keys/`` objects of different size are
  reported as ``conflicts`` and left alone: their names do not prove which
  copy is right.
* **Never deletes** on ``dst`` (RET-MIN: replicas are pruned by prune, not
  here).  Key slots that exist only on ``dst`` - e.g. slots revoked on the
  source by a rotation - are reported in ``dst_only_keys`` so the rotation can
  remove them explicitly.
* **Failures.**  A target that stays unreachable raises
  ``BackendConnectionError`` (after the retries of a ``RetryingBackend``);
  its ``details["progress"]`` holds the counts so far.  The caller marks
  the run partial; since only missing objects are copied, the next run
  picks up exactly what this one missed.  An object deleted on ``src``
  between listing and copying (concurrent prune) is skipped (``vanished``).

Objects are copied one at a time, whole, in memory (packs are a few MiB).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from fleetsafe.errors import BackendConnectionError, IntegrityError, ObjectNotFound
from fleetsafe.storage.base import Backend, ObjectInfo

DEFAULT_PREFIXES: tuple[str, ...] = ("keys/", "config", "packs/", "index/", "snapshots/")

#: copy order: lower first.  Unknown prefixes go with the packs (data before
#: anything that could reference it).
_RANK = {"keys/": 0, "config": 0, "packs/": 1, "index/": 2, "snapshots/": 3}
_CONTENT_ADDRESSED = ("packs/", "index/", "snapshots/")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _rank(prefix: str) -> int:
    return _RANK.get(prefix, 1)


def expected_sha256(name: str) -> str | None:
    """The sha256 hex a content-addressed object's bytes must have, else None."""
    if not name.startswith(_CONTENT_ADDRESSED):
        return None
    last = name.rsplit("/", 1)[-1]
    return last if _HEX64.match(last) else None


def _new_result(prefixes: Iterable[str]) -> dict[str, Any]:
    return {
        "ok": True,
        "copied": 0,
        "bytes": 0,
        "present": 0,
        "repaired": [],
        "corrupt": [],
        "conflicts": [],
        "vanished": [],
        "held": 0,
        "dst_only_keys": [],
        "by_prefix": {p: {"copied": 0, "bytes": 0, "present": 0} for p in prefixes},
        "seconds": 0.0,
    }


def replicate(
    src: Backend,
    dst: Backend,
    prefixes: Iterable[str] = DEFAULT_PREFIXES,
    *,
    on_copy: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Copy objects missing on ``dst`` from ``src``; return counts (see module doc).

    Result keys: ``ok`` (nothing corrupt, conflicting or held), ``copied``,
    ``bytes``, ``present`` (already on dst), ``repaired``, ``corrupt``,
    ``conflicts``, ``vanished`` (lists of names), ``held`` (objects not
    copied because of earlier corruption), ``dst_only_keys``, ``by_prefix``
    ({prefix: {copied, bytes, present}}), ``seconds``.
    ``on_copy(name, size)`` is called after each object is stored.
    """
    ordered = sorted(dict.fromkeys(prefixes), key=_rank)  # stable: caller order within a rank
    result = _new_result(ordered)
    start = time.monotonic()
    corrupt_rank: int | None = None
    try:
        for prefix in ordered:
            rank = _rank(prefix)
            src_objs = src.list(prefix)
            if corrupt_rank is not None and rank > corrupt_rank:
                dst_names = {o.name for o in dst.list(prefix)}
                result["held"] += sum(1 for o in src_objs if o.name not in dst_names)
                continue
            dst_sizes = {o.name: o.size for o in dst.list(prefix)}
            if prefix == "keys/":
                src_names = {o.name for o in src_objs}
                result["dst_only_keys"] = sorted(n for n in dst_sizes if n not in src_names)
            for obj in src_objs:
                if _copy_one(src, dst, obj, dst_sizes.get(obj.name), prefix, result, on_copy):
                    corrupt_rank = rank if corrupt_rank is None else min(corrupt_rank, rank)
    except BackendConnectionError as exc:
        result["ok"] = False
        result["seconds"] = round(time.monotonic() - start, 3)
        exc.details["progress"] = result
        raise
    result["ok"] = not (result["corrupt"] or result["conflicts"] or result["held"])
    result["seconds"] = round(time.monotonic() - start, 3)
    return result


def _copy_one(
    src: Backend,
    dst: Backend,
    obj: ObjectInfo,
    dst_size: int | None,
    prefix: str,
    result: dict[str, Any],
    on_copy: Callable[[str, int], None] | None,
) -> bool:
    """Copy one object if needed; True if the source copy is corrupt."""
    name = obj.name
    digest = expected_sha256(name)
    if dst_size is not None:
        if dst_size == obj.size:
            result["present"] += 1
            result["by_prefix"][prefix]["present"] += 1
            return False
        if digest is None:
            result["conflicts"].append(name)
            return False
        # Content-addressed and a different size: the dst copy is damaged.
    try:
        data = src.load(name)
    except ObjectNotFound:
        result["vanished"].append(name)
        return False
    except IntegrityError:
        result["corrupt"].append(name)  # e.g. short read: shorter than listed
        return True
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        result["corrupt"].append(name)
        return True
    dst.store(name, data)
    if dst_size is not None:
        result["repaired"].append(name)
    result["copied"] += 1
    result["bytes"] += len(data)
    result["by_prefix"][prefix]["copied"] += 1
    result["by_prefix"][prefix]["bytes"] += len(data)
    if on_copy is not None:
        on_copy(name, len(data))
    return False
