"""VER-SAMPLE: restore a random sample of files and compare them with the live ones.

Contract: ``choose_sample`` picks ``k`` regular files uniformly at random in
one pass (reservoir sampling, O(k) memory); ``compare_samples`` hashes each
restored copy and classifies the live file as ``match`` / ``differs`` (live
file unchanged since the backup: same size, mtime, ctime and inode),
``changed``, ``missing``, ``unreadable``, or the copy as ``not_restored``.
``differs`` means damage, in the backup or in the live file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from fleetsafe.pathnames import display_path
from fleetsafe.restore import normalise_include


def choose_sample(entries: Iterable[dict[str, Any]], k: int, include: Sequence[str | bytes] = (),
                  rng: Any = None) -> list[dict[str, Any]]:
    """``k`` regular files chosen uniformly at random (reservoir sampling: one pass, O(k) memory)."""
    import random

    r = rng if rng is not None else random.SystemRandom()
    incl = [p for p in (normalise_include(i) for i in include) if p]
    chosen: list[dict[str, Any]] = []
    n = 0
    for e in entries:
        if e.get("type") != "file":
            continue
        path = e.get("path")
        if not isinstance(path, bytes):
            continue
        if incl and not any(path == p or path.startswith(p + b"/") for p in incl):
            continue
        n += 1
        if len(chosen) < k:
            chosen.append(e)
        else:
            j = r.randrange(n)
            if j < k:
                chosen[j] = e
    return chosen


def _sha256_of(fd: int) -> str:
    import hashlib

    h = hashlib.sha256()
    while True:
        b = os.read(fd, 1024 * 1024)
        if not b:
            return h.hexdigest()
        h.update(b)


def compare_samples(target_dir: str | bytes | os.PathLike[str], samples: list[dict[str, Any]],
                    live_root: bytes = b"/") -> list[dict[str, Any]]:
    """For each sampled file: the restored copy's SHA-256, and how it compares with the live file.

    ``live`` is ``match`` / ``differs`` when the live file is unchanged since the backup (same
    size, mtime, ctime and inode -- ctime cannot be set back, so equal metadata means the
    content must be equal), ``changed`` when it was modified since, ``missing`` when it is gone.
    ``differs`` therefore means damage: in the backup, or in the live file (bit rot).
    """
    from fleetsafe.fsread import open_for_read

    root = os.fsencode(target_dir)
    out: list[dict[str, Any]] = []
    for e in samples:
        path: bytes = e["path"]
        item: dict[str, Any] = {"path": display_path(b"/" + path), "size": int(e.get("size", 0))}
        try:
            fd = os.open(os.path.join(root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            item.update(sha256=None, live="not_restored", error=exc.strerror or str(exc))
            out.append(item)
            continue
        try:
            item["sha256"] = _sha256_of(fd)
        finally:
            os.close(fd)
        live = os.path.join(live_root, path)
        try:
            lfd, st = open_for_read(live)
        except FileNotFoundError:
            item["live"] = "missing"
            out.append(item)
            continue
        except OSError as exc:
            item.update(live="unreadable", error=exc.strerror or str(exc))
            out.append(item)
            continue
        try:
            same = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) == (
                e.get("size"), e.get("mtime_ns"), e.get("ctime_ns"), e.get("ino"))
            if not same:
                item["live"] = "changed"
            else:
                item["live"] = "match" if _sha256_of(lfd) == item["sha256"] else "differs"
        finally:
            os.close(lfd)
        out.append(item)
    return out
