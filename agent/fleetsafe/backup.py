"""Backup: walk, chunk, store, save one complete snapshot (FREQ-FULL, FREQ-INCR).

Contract:

* ``run_backup(repo, request)`` writes one snapshot and returns a
  ``BackupResult``.  Both types produce a complete, independently restorable
  snapshot; no restore ever needs a chain.
* ``full`` reads and chunks every regular file.  ``incremental`` loads the
  parent snapshot's tree (the newest snapshot of the same host and the same
  source paths) and reuses a file's content ids without reading it when
  ``size``, ``mtime_ns``, ``ctime_ns`` and ``ino`` are unchanged and every
  reused blob is still indexed.  ``ctime`` is in the key because it cannot be
  set from user space: a file whose mtime was reset after a change (``touch
  -d``, ``tar x``) still has a new ctime.
* Hard links: a non-directory with ``st_nlink > 1`` whose ``(dev, ino)`` was
  already stored becomes a ``hardlink`` entry whose ``target`` is the first
  path.  A first path that could not be read is not registered, so a later
  name of the same inode is read itself rather than pointing at nothing.
* Per-path problems (vanished, permission denied, replaced by another type)
  go to ``on_error(path, exc)``: the path is named in ``errors[]``, left out
  of the snapshot, and the snapshot is saved with status ``partial`` (exit 3).
  A file whose size or mtime changed while it was read is stored as read and
  named in ``warnings[]``.
* Repository errors (storage full, target down) are not per-path: they
  propagate and the run fails with nothing saved; blobs already uploaded are
  re-used by the next run.

Manifest fields written (``repo.save_snapshot``): ``tree``, ``type``,
``host``, ``paths``, ``start``, ``end``, ``status``, ``parent``, ``stats``,
``errors`` (capped), ``exclude``, ``agent_version``, ``policy_scope`` (the
snapshot covers exactly the configured ``sources``; a ``full`` of a subset is
not the FREQ-FULL full; missing in older snapshots = true).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from fleetsafe import __version__
from fleetsafe.errors import FleetsafeError
from fleetsafe.fsread import FILE, HARDLINK, Item, Walker, WalkOptions, open_for_read
from fleetsafe.pathnames import display_path

log = logging.getLogger(__name__)

FULL, INCREMENTAL = "full", "incremental"
#: errors stored inside the manifest (the JSON result and audit event carry them all)
MANIFEST_ERRORS_MAX = 1000
_READ_BUFFER = 1024 * 1024


class Repo(Protocol):
    """The part of ``fleetsafe.repo.Repository`` a backup uses."""

    id: str

    def chunk(self, stream: Any) -> Iterator[bytes]: ...
    def has_blob(self, blob_id: Any) -> bool: ...
    def add_blob(self, kind: str, data: bytes, blob_id: Any = None) -> tuple[bytes, bool]: ...
    def write_tree(self, entries: Any) -> list[str]: ...
    def read_tree(self, tree_ids: list[str]) -> Iterator[dict[str, Any]]: ...
    def save_snapshot(self, manifest: dict[str, Any]) -> str: ...
    def list_snapshots(self) -> list[dict[str, Any]]: ...
    def flush(self) -> None: ...


@dataclass
class BackupRequest:
    host: str
    sources: list[str]
    backup_type: str = INCREMENTAL
    exclude: tuple[str, ...] = ()
    one_file_system: bool = True
    #: the sources are exactly the configured ones (no --source subset): only then is a full the policy's full
    policy_scope: bool = True


@dataclass
class BackupResult:
    snapshot_id: str
    type: str
    parent: str | None
    start: str
    end: str
    duration_seconds: float
    status: str
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    other: int = 0
    files_read: int = 0
    files_reused: int = 0
    bytes_total: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    packs_added: int = 0
    data_sets: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    policy_scope: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def iso_utc(ts: float) -> str:
    """ISO-8601 UTC with microseconds: snapshots taken within one second must still sort
    in the order they were taken (``list_snapshots`` orders by ``start``; the parent of an
    incremental is the newest)."""
    whole = int(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts - whole) * 1e6):06d}Z"


def error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def find_parent(repo: Repo, host: str, paths: list[str]) -> dict[str, Any] | None:
    """The newest snapshot of the same host and source paths (any type, success or partial)."""
    want = sorted(paths)
    best = None
    for snap in repo.list_snapshots():
        if snap.get("host") == host and sorted(snap.get("paths") or []) == want and snap.get("status") in ("success", "partial"):
            best = snap  # list_snapshots is oldest first
    return best


def _order_key(path: bytes) -> list[bytes]:
    """The walk order (fsread): pre-order, siblings by name bytes = order of component lists."""
    return path.split(b"/")


class ParentCursor:
    """The parent snapshot's tree, streamed alongside the walk (merge join).

    The parent was written by the same walker over the same source paths, so its
    entries come in the same order as the walk: one forward pass finds every
    match in O(1) memory, where a dict of a million-file tree would cost
    hundreds of MiB.  Lookups must come in walk order.  A parent in another
    order (another agent version) only costs re-reads, never correctness: a
    miss means "read the file".
    """

    def __init__(self, entries: Iterator[dict[str, Any]] | None) -> None:
        self._it = entries
        self._cur: dict[str, Any] | None = None
        self._key: list[bytes] = []
        #: why the parent stopped being used (a damaged parent tree must not fail the backup)
        self.error: str | None = None
        self._advance()

    def _advance(self) -> None:
        try:
            self._cur = next(self._it, None) if self._it is not None else None
        except FleetsafeError as exc:
            # Unreadable parent: read the remaining files instead of reusing. The new snapshot
            # stays complete; verify will name the damaged tree.
            self.error = f"parent snapshot tree unreadable, remaining files read in full: {exc}"
            log.warning("%s", self.error)
            self._it = None
            self._cur = None
        if self._cur is not None:
            self._key = _order_key(self._cur["path"])

    def lookup(self, path: bytes) -> dict[str, Any] | None:
        """The parent's entry for ``path`` if it was a regular file, else None."""
        key = _order_key(path)
        while self._cur is not None and self._key < key:
            self._advance()
        cur = self._cur
        if cur is not None and cur["path"] == path and cur.get("type") == FILE:
            return cur
        return None


Progress = Callable[[dict[str, Any]], None]


class _Run:
    """One backup's state while the walk streams entries into ``repo.write_tree``."""

    def __init__(self, repo: Repo, req: BackupRequest, parent: ParentCursor, progress: Progress | None) -> None:
        self.repo = repo
        self.req = req
        self.parent = parent
        self.progress = progress
        self.errors: list[dict[str, str]] = []
        self.warnings: list[str] = []
        self.counts = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "other": 0, "files_read": 0,
                       "files_reused": 0, "bytes_total": 0, "bytes_read": 0, "bytes_added": 0}
        self._links: dict[tuple[int, int], bytes] = {}
        self._last_progress = 0.0

    def on_error(self, path: bytes, exc: BaseException) -> None:
        """The one per-path error callback (STYLE 14): name the path, continue."""
        self.errors.append({"path": display_path(path), "error": error_text(exc)})
        log.warning("%s: %s", display_path(path), error_text(exc))

    def _tick(self, path: bytes, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= 0.2:
            self._last_progress = now
            self.progress({**self.counts, "path": display_path(path)})

    def entries(self, walker: Walker) -> Iterator[dict[str, Any]]:
        for item in walker.walk(self.req.sources):
            entry = self._entry(item)
            if entry is not None:
                yield entry
            self._tick(item.abspath)
        self._tick(b"", force=True)

    def _entry(self, item: Item) -> dict[str, Any] | None:
        entry = item.entry
        kind = entry["type"]
        key = (entry["dev"], entry["ino"])
        if kind != "dir" and item.nlink > 1 and key in self._links:
            entry = {k: v for k, v in entry.items() if k not in ("content", "size")}
            entry["type"] = HARDLINK
            entry["size"] = 0
            entry["target"] = self._links[key]
            self.counts["hardlinks"] += 1
            return entry
        if kind == FILE:
            if not self._file(item):
                return None
            self.counts["files"] += 1
        elif kind == "dir":
            self.counts["dirs"] += 1
        elif kind == "symlink":
            self.counts["symlinks"] += 1
        else:
            self.counts["other"] += 1
        if kind != "dir" and item.nlink > 1:
            self._links[key] = entry["path"]
        return entry

    def _file(self, item: Item) -> bool:
        entry = item.entry
        parent = self.parent.lookup(entry["path"])
        if (
            parent is not None
            and parent.get("size") == entry["size"]
            and parent.get("mtime_ns") == entry["mtime_ns"]
            and parent.get("ctime_ns") == entry["ctime_ns"]
            and parent.get("ino") == entry["ino"]
            and isinstance(parent.get("content"), list)
            and all(self.repo.has_blob(c) for c in parent["content"])
        ):
            entry["content"] = list(parent["content"])
            self.counts["files_reused"] += 1
            self.counts["bytes_total"] += entry["size"]
            return True
        try:
            fd, st = open_for_read(item.abspath)
        except OSError as exc:
            self.on_error(item.abspath, exc)
            return False
        try:
            if (st.st_ino, st.st_dev) != (entry["ino"], entry["dev"]):
                self.warnings.append(f"{display_path(item.abspath)}: replaced after the walk; stored as it is now")
            self._refresh(entry, st)
            content: list[str] = []
            size = 0
            with os.fdopen(fd, "rb", buffering=_READ_BUFFER, closefd=False) as fh:
                for chunk in self.repo.chunk(fh):
                    bid, new = self.repo.add_blob("data", chunk)
                    content.append(bid.hex())
                    size += len(chunk)
                    if new:
                        self.counts["bytes_added"] += len(chunk)
                    self._tick(item.abspath)
            after = os.fstat(fd)
        except OSError as exc:
            self.on_error(item.abspath, exc)
            return False
        finally:
            os.close(fd)
        if size != st.st_size or after.st_mtime_ns != st.st_mtime_ns or after.st_size != size:
            self.warnings.append(f"{display_path(item.abspath)}: changed while being read (stored {size} bytes)")
        # The entry describes what was stored: size is the bytes read, so restore can check it.
        entry["size"] = size
        entry["content"] = content
        self.counts["files_read"] += 1
        self.counts["bytes_read"] += size
        self.counts["bytes_total"] += size
        return True

    @staticmethod
    def _refresh(entry: dict[str, Any], st: os.stat_result) -> None:
        entry.update(mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, mtime_ns=st.st_mtime_ns,
                     ctime_ns=st.st_ctime_ns, ino=st.st_ino, dev=st.st_dev, size=st.st_size)


def run_backup(repo: Repo, req: BackupRequest, *, progress: Progress | None = None,
               parent: dict[str, Any] | None = None) -> BackupResult:
    """Take one snapshot.  Caller holds the repository lock."""
    if req.backup_type not in (FULL, INCREMENTAL):
        raise ValueError(f"backup type must be full or incremental, got {req.backup_type!r}")
    t0 = time.time()
    start = iso_utc(t0)
    warnings: list[str] = []
    forget = getattr(repo, "forget_missing_packs", None)
    if forget is not None:
        # Never trust an index entry whose pack is gone (deleted, quarantined by ``repair``):
        # ``has_blob`` then says no and the blob is stored again from the live file.
        dropped = forget()
        if dropped:
            warnings.append(f"{dropped} pack(s) named by the index are missing: their blobs were stored again "
                            "where the live files still have them (run `fleetsafe repair`)")
    if parent is None:
        parent = find_parent(repo, req.host, req.sources)
    parent_entries: Iterator[dict[str, Any]] | None = None
    if req.backup_type == INCREMENTAL:
        if parent is None:
            warnings.append("no parent snapshot of these paths: every file was read")
        else:
            # Streamed while the new tree is written; tree blobs of the parent are sealed and
            # indexed, so reading them interleaved with new writes touches no shared state.
            parent_entries = repo.read_tree(list(parent.get("tree") or []))
    written_before = dict(getattr(repo, "written", {}) or {})

    run = _Run(repo, req, ParentCursor(parent_entries), progress)
    walker = Walker(WalkOptions(exclude=req.exclude, one_file_system=req.one_file_system), run.on_error)
    tree = repo.write_tree(run.entries(walker))
    warnings.extend(walker.warnings)
    if run.parent.error:
        warnings.append(run.parent.error)
    for mount in walker.skipped_mounts:
        warnings.append(f"{display_path(mount)}: other filesystem, not descended (one_file_system)")
    status = "partial" if run.errors else "success"
    t1 = time.time()
    end = iso_utc(t1)
    stats = {k: v for k, v in run.counts.items()}
    parent_id: str | None = str(parent["id"]) if parent is not None and req.backup_type == INCREMENTAL else None
    manifest: dict[str, Any] = {
        "tree": tree,
        "type": req.backup_type,
        "host": req.host,
        "paths": list(req.sources),
        "exclude": list(req.exclude),
        "start": start,
        "end": end,
        "status": status,
        "parent": parent_id,
        "stats": stats,
        "errors": run.errors[:MANIFEST_ERRORS_MAX],
        "agent_version": __version__,
        "policy_scope": bool(req.policy_scope),
    }
    snapshot_id = repo.save_snapshot(manifest)
    written_after = dict(getattr(repo, "written", {}) or {})
    result = BackupResult(
        snapshot_id=snapshot_id,
        type=req.backup_type,
        parent=parent_id,
        start=start,
        end=end,
        duration_seconds=round(t1 - t0, 3),
        status=status,
        data_sets=list(req.sources),
        errors=run.errors,
        warnings=warnings + run.warnings,
        policy_scope=bool(req.policy_scope),
        bytes_stored=int(written_after.get("bytes", 0)) - int(written_before.get("bytes", 0)),
        packs_added=int(written_after.get("packs", 0)) - int(written_before.get("packs", 0)),
        **run.counts,
    )
    return result
