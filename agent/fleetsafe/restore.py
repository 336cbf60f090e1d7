"""REST-SAFE restore writer: check first, then write only inside the target.

Contract (docs/cli.md, ``fleetsafe restore``; policy REST-SAFE):

1. **Plan** (``plan_restore``): every tree entry is validated before
   anything is written (streamed: only paths and types are kept in memory).  Refused, for the whole restore (``RestoreRefused``,
   exit 8): an empty, absolute or NUL-containing path, a ``.``/``..``/empty
   component, a path whose parent is a non-directory entry of the snapshot
   (a symlinked parent), a duplicate path, a hard link whose target is not an
   earlier non-directory entry, an unknown entry type.
2. **Integrity** (``check_integrity``): every blob the restore will read must
   be indexed, and every one is loaded -- which decrypts and authenticates it
   -- before the first byte is written.  Any problem refuses the restore.
3. **Conflicts** (``RestoreWriter.preflight``): without ``overwrite``, any
   existing non-directory at a path to be written refuses the restore; a
   symlink anywhere on the way is refused even with ``overwrite``.
4. **Write** (``RestoreWriter.write``): every path is reached by a dir-fd
   walk from the target directory -- ``os.open(component, O_NOFOLLOW |
   O_DIRECTORY, dir_fd=parent)`` -- so nothing can lead outside the target or
   through a symlink, including one this restore created a moment earlier.
   Files are created with ``O_CREAT|O_EXCL|O_NOFOLLOW``; with ``overwrite``
   they are written to a temp name and renamed over the old one inside the
   same directory fd.  Owners are set with ``fchown`` on the open fd, only when
   running as root; modes after owners (``chown`` clears set-id bits); mtimes
   last, directories after all their contents (deepest first).

Per-entry failures while writing go to ``on_error(path, exc)`` and make the
restore ``partial``; they never escape as ``OSError``.

The writer needs only ``load_blob(hex_id) -> bytes`` and ``has_blob``; it
knows nothing else of the repository, so unit tests drive it with a dict.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetsafe.errors import EXIT_NOT_FOUND, FleetsafeError, RestoreRefused
from fleetsafe.pathnames import display_path

OnError = Callable[[bytes, BaseException], None]
LoadBlob = Callable[[str], bytes]
HasBlob = Callable[[str], bool]

KNOWN_TYPES = ("file", "dir", "symlink", "hardlink", "fifo", "other")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TMP_PREFIX = b".fleetsafe-restore-"
#: errors of the target as a whole (full, quota, read-only): the restore stops
_FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: zero chunks at least this long are restored as holes
_HOLE_MIN = 64 * 1024


class RestoreAborted(FleetsafeError):
    """The target as a whole failed (disk full, quota, read-only) part-way through."""

    template = "restore into {path} aborted after {done} file(s): {msg}"
    kind = "restore_aborted"


class IncludeNotFound(FleetsafeError):
    """``--include PATH`` names nothing in the snapshot (exit 9, like a missing snapshot)."""

    template = "--include {path} matches nothing in the snapshot{msg}"
    exit_code = EXIT_NOT_FOUND
    kind = "path_not_found"


class UnsafePath(RestoreRefused):
    kind = "unsafe_path"  # message template inherited from RestoreRefused


def refuse(path: bytes | str, msg: str) -> UnsafePath:
    return UnsafePath(msg, path=display_path(path) if isinstance(path, bytes) else path)


def split_rel_path(path: object) -> list[bytes]:
    """Components of a tree entry path, or ``UnsafePath``.

    The only accepted form is ``a/b/c``: relative, ``/``-separated, no empty,
    ``.`` or ``..`` component, no NUL.  Anything else is refused rather than
    normalised, because a snapshot holding such a path was not written by us.
    """
    if not isinstance(path, bytes):
        raise refuse(repr(path), "path is not bytes")
    if not path:
        raise refuse(path, "empty path")
    if b"\0" in path:
        raise refuse(path, "path contains NUL")
    if path.startswith(b"/"):
        raise refuse(path, "absolute path")
    parts = path.split(b"/")
    for part in parts:
        if part in (b"", b".", b".."):
            raise refuse(path, "path has an empty, '.' or '..' component")
    return parts


def normalise_include(path: str | bytes) -> bytes:
    """``--include /etc/hosts`` and ``etc/hosts`` name the same entry."""
    b = os.fsencode(path).strip(b"/")
    while b"//" in b:
        b = b.replace(b"//", b"/")
    if b:
        split_rel_path(b)
    return b


EntrySource = Callable[[], Iterable[dict[str, Any]]]


@dataclass
class RestorePlan:
    """A validated selection, re-streamed from its source for every pass.

    Only paths and types of the whole tree are held in memory while planning
    (about 150 bytes per entry), never the entries themselves: a restore of a
    million-file snapshot must not need gigabytes.  The source is an
    immutable, authenticated snapshot tree, so every pass sees the same
    entries.
    """

    source: EntrySource
    include: list[bytes]
    #: hard-link path -> copy of its first path's entry (first path outside --include)
    promoted: dict[bytes, dict[str, Any]]
    #: unique content blob ids (hex) in first-use order
    blob_ids: list[str]
    total_bytes: int
    warnings: list[str] = field(default_factory=list)
    #: first paths that selected hard links point at (the writer remembers only these)
    link_targets: set[bytes] = field(default_factory=set)

    @property
    def entries(self) -> Iterator[dict[str, Any]]:
        """The entries to write, in tree order."""
        for entry in self.source():
            path = entry["path"]
            if not _selected(path, self.include):
                continue
            yield self.promoted.get(path, entry)

    @classmethod
    def unchecked(cls, entries: list[dict[str, Any]]) -> RestorePlan:
        """A plan that skips step 1 (tests of the writer's own defences only)."""
        targets = {e["target"] for e in entries if e.get("type") == "hardlink" and isinstance(e.get("target"), bytes)}
        return cls(lambda: iter(entries), [], {}, [], 0, link_targets=targets)


def _selected(path: bytes, include: list[bytes]) -> bool:
    if not include:
        return True
    for p in include:
        if path == p or path.startswith(p + b"/") or p.startswith(path + b"/"):
            # the path itself, something below it, or an ancestor directory of it
            return True
    return False


def _source_of(entries: Iterable[dict[str, Any]] | EntrySource) -> EntrySource:
    if callable(entries):
        return entries
    frozen = entries if isinstance(entries, (list, tuple)) else list(entries)
    return lambda: iter(frozen)


def plan_restore(entries: Iterable[dict[str, Any]] | EntrySource, include: Sequence[str | bytes] = ()) -> RestorePlan:
    """Validate every entry and select (``include``); see the module docstring, step 1.

    ``entries`` is a list of entries or a function returning a fresh iterator
    over them (``lambda: repo.read_tree(ids)``): the tree is streamed once to
    validate, once more only when hard links must be promoted to copies, and
    again by each later step.
    """
    source = _source_of(entries)
    incl = [p for p in (normalise_include(i) for i in include) if p]

    types: dict[bytes, str] = {}  # every path seen so far -> its type
    below: set[bytes] = set()  # every ancestor of a path seen so far
    matched: set[bytes] = set()
    promote: dict[bytes, bytes] = {}  # hard-link path -> first path outside --include
    link_targets: set[bytes] = set()
    blob_ids: list[str] = []
    seen_blobs: set[str] = set()
    total = 0
    for entry in source():
        path = entry.get("path")
        split_rel_path(path)
        assert isinstance(path, bytes)  # split_rel_path refused anything else
        kind = entry.get("type")
        if kind not in KNOWN_TYPES:
            raise refuse(path, f"unknown entry type {kind!r}")
        if path in types:
            raise refuse(path, "duplicate path in snapshot")
        parts = path.split(b"/")
        # Every ancestor the snapshot holds must be a directory: a symlinked parent (crafted
        # "a" -> "/etc", then "a/passwd") is refused, never resolved -- in either order.
        for i in range(1, len(parts)):
            anc = b"/".join(parts[:i])
            anc_type = types.get(anc)
            if anc_type is not None and anc_type != "dir":
                raise refuse(path, f"parent {display_path(anc)} is a {anc_type}, not a directory")
            below.add(anc)
        if kind != "dir" and path in below:
            raise refuse(path, f"a {kind} entry has entries below it")
        if kind == "symlink":
            target = entry.get("target")
            if not isinstance(target, bytes) or not target or b"\0" in target:
                raise refuse(path, "symlink without a valid target")
        if kind == "hardlink":
            target = entry.get("target")
            split_rel_path(target)
            assert isinstance(target, bytes)
            if types.get(target) in (None, "dir", "hardlink"):
                raise refuse(path, "hard link target is not an earlier non-directory entry")
        if kind == "file":
            content = entry.get("content")
            if not isinstance(content, list) or not all(isinstance(c, str) for c in content):
                raise refuse(path, "file entry without a content list")
        types[path] = str(kind)
        if not _selected(path, incl):
            continue
        for p in incl:
            if path == p or path.startswith(p + b"/"):
                matched.add(p)
        if kind == "hardlink":
            if _selected(entry["target"], incl):
                link_targets.add(entry["target"])
            else:
                promote[path] = entry["target"]
        if kind == "file":
            total += int(entry.get("size", 0))
            for cid in entry["content"]:
                if cid not in seen_blobs:
                    seen_blobs.add(cid)
                    blob_ids.append(cid)
    del types, below

    for p in incl:
        if p not in matched:
            raise IncludeNotFound(" (list its entries with `fleetsafe ls`)", path=display_path(b"/" + p))

    promoted: dict[bytes, dict[str, Any]] = {}
    warnings: list[str] = []
    if promote:
        # The first path of a hard link is outside --include: restore the link as a copy of it.
        wanted = set(promote.values())
        originals = {e["path"]: e for e in source() if e["path"] in wanted}
        for path, target in promote.items():
            copy = dict(originals[target])
            copy["path"] = path
            promoted[path] = copy
            warnings.append(f"{display_path(path)}: hard link target outside --include, restored as a copy")
            if copy["type"] == "file":
                total += int(copy.get("size", 0))
                for cid in copy["content"]:
                    if cid not in seen_blobs:
                        seen_blobs.add(cid)
                        blob_ids.append(cid)
    return RestorePlan(source, incl, promoted, blob_ids, total, warnings, link_targets)


class BlobCache:
    """Decrypted blobs kept between the integrity pass and the write pass, up to a budget.

    Small restores (the usual single file or directory) then read every blob
    once; large ones read twice rather than hold the data set in memory.
    """

    def __init__(self, load: LoadBlob, budget: int = 256 * 1024 * 1024) -> None:
        self._load = load
        self._budget = budget
        self._used = 0
        self._data: dict[str, bytes] = {}
        self.loads = 0

    def load(self, blob_id: str) -> bytes:
        data = self._data.get(blob_id)
        if data is not None:
            return data
        self.loads += 1
        return self._load(blob_id)

    def prefetch(self, blob_id: str) -> int:
        data = self._load(blob_id)
        self.loads += 1
        if self._used + len(data) <= self._budget:
            self._data[blob_id] = data
            self._used += len(data)
        return len(data)


def check_integrity(plan: RestorePlan, has_blob: HasBlob, cache: BlobCache) -> list[dict[str, str]]:
    """Step 2: every needed blob indexed, and every one loads (= authenticates).  Returns problems."""
    problems: list[dict[str, str]] = []
    for cid in plan.blob_ids:
        if not has_blob(cid):
            problems.append({"object": cid, "problem": "blob not in the index"})
    if problems:
        return problems
    for cid in plan.blob_ids:
        try:
            cache.prefetch(cid)
        except FleetsafeError as exc:
            problems.append({"object": cid, "problem": str(exc)})
    return problems


class _Dirs:
    """Open directory fds reached from the target root, one ``O_NOFOLLOW`` component at a time."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self._cache: dict[bytes, int] = {b"": root_fd}

    def open(self, rel_dir: bytes, *, create: bool, created: set[bytes] | None = None) -> int:
        fd = self._cache.get(rel_dir)
        if fd is not None:
            return fd
        parent, _, name = rel_dir.rpartition(b"/")
        pfd = self.open(parent, create=create, created=created)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise
            # Not in the snapshot (or outside --include): make it private; it gets no metadata.
            os.mkdir(name, 0o700, dir_fd=pfd)
            if created is not None:
                created.add(rel_dir)
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise refuse(rel_dir, "a symlink or non-directory is in the way; not followed") from exc
            raise
        self._cache[rel_dir] = fd
        return fd

    def forget_below(self, keep: bytes) -> None:
        """Close cached fds that are not ancestors of ``keep`` (pre-order walk: they are done)."""
        for path in list(self._cache):
            if path and not (keep == path or keep.startswith(path + b"/")):
                os.close(self._cache.pop(path))

    def close(self) -> None:
        for path, fd in list(self._cache.items()):
            if path:
                os.close(fd)
        self._cache = {b"": self.root_fd}


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    other: int = 0
    bytes: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class RestoreWriter:
    """Writes a validated plan below ``target_dir`` (see module docstring, steps 3 and 4)."""

    def __init__(
        self,
        target_dir: str | bytes | os.PathLike[str],
        *,
        overwrite: bool = False,
        chown: bool | None = None,
        on_error: OnError | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.target = os.fsencode(target_dir)
        self.overwrite = overwrite
        self.chown = (os.geteuid() == 0) if chown is None else chown
        self.stats = RestoreStats()
        self._on_error = on_error
        self._progress = progress
        self._restored: set[bytes] = set()
        self._created_dirs: set[bytes] = set()
        self._dir_meta: list[dict[str, Any]] = []

    # --- target -------------------------------------------------------------------

    def _open_root(self) -> int:
        try:
            os.makedirs(self.target, mode=0o700, exist_ok=True)
            return os.open(self.target, _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise refuse(self.target, "target directory is a symlink or not a directory") from exc
            if exc.errno in _FATAL_ERRNOS or exc.errno in (errno.EACCES, errno.EPERM):
                # The target as a whole cannot be written (read-only, full, no permission): docs/cli.md.
                raise RestoreAborted(exc.strerror or str(exc), path=display_path(self.target),
                                     done=0) from exc
            raise RestoreRefused(exc.strerror or str(exc), path=display_path(self.target)) from exc

    def _error(self, path: bytes, exc: BaseException) -> None:
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.stats.errors.append({"path": display_path(path), "error": msg})
        if self._on_error is not None:
            self._on_error(path, exc)

    # --- step 3 ---------------------------------------------------------------------

    def preflight(self, plan: RestorePlan) -> list[dict[str, str]]:
        """Existing things in the way.  Never changes anything."""
        conflicts: list[dict[str, str]] = []
        root = self._open_root()
        dirs = _Dirs(root)
        try:
            for entry in plan.entries:
                path: bytes = entry["path"]
                parent, _, name = path.rpartition(b"/")
                dirs.forget_below(parent)
                try:
                    pfd = dirs.open(parent, create=False)
                except FileNotFoundError:
                    continue  # parent will be created: nothing can be in the way
                except UnsafePath as exc:
                    conflicts.append({"path": display_path(path), "problem": str(exc)})
                    continue
                try:
                    st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if entry["type"] != "dir":
                        conflicts.append({"path": display_path(path), "problem": "a directory exists where a non-directory would be written"})
                    continue
                if stat.S_ISLNK(st.st_mode) and entry["type"] == "dir":
                    conflicts.append({"path": display_path(path), "problem": "a symlink exists where a directory would be created; it is never followed"})
                elif entry["type"] == "dir":
                    conflicts.append({"path": display_path(path), "problem": "a non-directory exists where a directory would be created"})
                elif not self.overwrite:
                    conflicts.append({"path": display_path(path), "problem": "exists (use --overwrite to replace)"})
        finally:
            dirs.close()
            os.close(root)
        return conflicts

    # --- step 4 ---------------------------------------------------------------------

    def write(self, plan: RestorePlan, load_blob: LoadBlob) -> RestoreStats:
        root = self._open_root()
        dirs = _Dirs(root)
        done_bytes = 0
        try:
            for entry in plan.entries:
                path: bytes = entry["path"]
                parent, _, name = path.rpartition(b"/")
                dirs.forget_below(parent)
                try:
                    pfd = dirs.open(parent, create=True, created=self._created_dirs)
                    self._write_entry(pfd, dirs, name, entry, load_blob)
                    if path in plan.link_targets:
                        self._restored.add(path)
                except OSError as exc:
                    if exc.errno in _FATAL_ERRNOS:
                        # Not this file's problem: every later file would fail the same way.
                        raise RestoreAborted(exc.strerror or str(exc), path=display_path(self.target),
                                             done=self.stats.files) from exc
                    self._error(path, exc)
                except FleetsafeError as exc:
                    self._error(path, exc)
                if entry["type"] == "file":
                    done_bytes += int(entry.get("size", 0))
                    if self._progress:
                        self._progress(done_bytes, plan.total_bytes)
            dirs.close()
            self._finish_dirs(root)
        finally:
            dirs.close()
            os.close(root)
        self.stats.warnings.extend(plan.warnings)
        return self.stats

    def _tmp_name(self) -> bytes:
        return _TMP_PREFIX + secrets.token_hex(8).encode()

    def _write_entry(self, pfd: int, dirs: _Dirs, name: bytes, entry: dict[str, Any], load_blob: LoadBlob) -> None:
        kind = entry["type"]
        if kind == "dir":
            self._make_dir(pfd, name, entry)
        elif kind == "file":
            self._make_file(pfd, name, entry, load_blob)
        elif kind == "symlink":
            self._make_symlink(pfd, name, entry)
        elif kind == "hardlink":
            self._make_hardlink(pfd, dirs, name, entry)
        elif kind == "fifo":
            self._make_fifo(pfd, name, entry)
        else:
            # Devices and sockets carry no content and need mknod; they are recreated by the OS.
            self.stats.warnings.append(f"{display_path(entry['path'])}: {kind} entry not restored")

    def _replace_into(self, pfd: int, name: bytes, make: Callable[[bytes], None]) -> None:
        """Create via ``make(name)`` directly (O_EXCL semantics) or, with overwrite, via temp + rename."""
        if not self.overwrite:
            make(name)
            return
        tmp = self._tmp_name()
        make(tmp)
        try:
            # rename never follows a symlink at the destination: it replaces the link itself.
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except OSError:
            try:
                os.unlink(tmp, dir_fd=pfd)
            except OSError:
                pass
            raise

    def _make_dir(self, pfd: int, name: bytes, entry: dict[str, Any]) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
            created = True
        except FileExistsError:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise refuse(entry["path"], "a non-directory exists where a directory would be created") from None
            created = entry["path"] in self._created_dirs
        self._created_dirs.discard(entry["path"])
        # Metadata later (deepest first), and only on directories this restore made, unless
        # --overwrite: an existing directory we merge into keeps its own mode and owner.
        if created or self.overwrite:
            self._dir_meta.append(entry)
        self.stats.dirs += 1

    def _apply_fd_meta(self, fd: int, entry: dict[str, Any]) -> None:
        # Order matters: chown clears set-id bits and file capabilities, so mode and xattrs
        # come after it; setting xattrs changes ctime only, so mtime can still go last.
        if self.chown:
            os.fchown(fd, int(entry.get("uid", 0)), int(entry.get("gid", 0)))
        os.fchmod(fd, int(entry.get("mode", 0o600)) & 0o7777)
        xattrs = entry.get("xattrs")
        if isinstance(xattrs, dict) and xattrs:
            self._set_xattrs(fd, entry["path"], xattrs)
        mtime = int(entry.get("mtime_ns", 0))
        os.utime(fd, ns=(mtime, mtime))

    def _set_xattrs(self, fd: int, path: bytes, xattrs: dict[str, Any]) -> None:
        """Best effort: a name this user or filesystem may not set is a warning, not a failure.

        ``security.selinux`` is skipped: labels belong to the policy of the host restored
        to (``restorecon``), not to the staging directory.
        """
        import base64

        failed: list[str] = []
        for name, value in sorted(xattrs.items()):
            if not isinstance(name, str) or not isinstance(value, str) or name == "security.selinux":
                continue
            try:
                os.setxattr(fd, name, base64.b64decode(value, validate=True))
            except (OSError, ValueError):
                failed.append(name)
        if failed:
            self.stats.warnings.append(f"{display_path(path)}: extended attribute(s) not restored: {', '.join(failed)}")

    def _make_file(self, pfd: int, name: bytes, entry: dict[str, Any], load_blob: LoadBlob) -> None:
        path = entry["path"]

        def make(fname: bytes) -> None:
            fd = os.open(fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                written = 0
                hole = False
                for cid in entry["content"]:
                    data = load_blob(cid)
                    if len(data) >= _HOLE_MIN and not data.strip(b"\0"):
                        # A chunk of zeros (disk images, databases): leave a hole instead of
                        # writing it, so sparse files come back sparse.
                        os.lseek(fd, len(data), os.SEEK_CUR)
                        hole = True
                    else:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view) :]
                        hole = False
                    written += len(data)
                if hole:
                    os.ftruncate(fd, written)  # a trailing hole has no bytes to set the size
                expected = int(entry.get("size", written))
                if written != expected:
                    raise refuse(path, f"content is {written} bytes, entry says {expected}")
                self._apply_fd_meta(fd, entry)
                self.stats.bytes += written
            except BaseException:
                os.close(fd)
                try:
                    os.unlink(fname, dir_fd=pfd)
                except OSError:
                    pass
                raise
            os.close(fd)

        self._replace_into(pfd, name, make)
        self.stats.files += 1

    def _make_symlink(self, pfd: int, name: bytes, entry: dict[str, Any]) -> None:
        def make(fname: bytes) -> None:
            os.symlink(entry["target"], fname, dir_fd=pfd)
            if self.chown:
                os.chown(fname, int(entry.get("uid", 0)), int(entry.get("gid", 0)), dir_fd=pfd, follow_symlinks=False)
            mtime = int(entry.get("mtime_ns", 0))
            os.utime(fname, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

        self._replace_into(pfd, name, make)
        self.stats.symlinks += 1

    def _make_hardlink(self, pfd: int, dirs: _Dirs, name: bytes, entry: dict[str, Any]) -> None:
        target: bytes = entry["target"]
        if target not in self._restored:
            raise refuse(entry["path"], f"hard link target {display_path(target)} was not restored")
        tparent, _, tname = target.rpartition(b"/")
        tfd = dirs.open(tparent, create=False)

        def make(fname: bytes) -> None:
            # follow_symlinks=False: linking a restored symlink links the symlink, not what it names.
            os.link(tname, fname, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

        self._replace_into(pfd, name, make)
        self.stats.hardlinks += 1

    def _make_fifo(self, pfd: int, name: bytes, entry: dict[str, Any]) -> None:
        def make(fname: bytes) -> None:
            os.mkfifo(fname, 0o600, dir_fd=pfd)
            # A FIFO opened read-only and non-blocking returns at once; O_NOFOLLOW makes sure
            # the metadata lands on the node we just made.
            fd = os.open(fname, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                self._apply_fd_meta(fd, entry)
            finally:
                os.close(fd)

        self._replace_into(pfd, name, make)
        self.stats.other += 1

    def _finish_dirs(self, root: int) -> None:
        """Directory owners, modes and mtimes, deepest first, so a 0500 parent is set after
        its children were written and a child's mtime is not bumped by later writes."""
        dirs = _Dirs(root)
        try:
            for entry in sorted(self._dir_meta, key=lambda e: e["path"].count(b"/"), reverse=True):
                path = entry["path"]
                parent, _, name = path.rpartition(b"/")
                dirs.forget_below(parent)
                try:
                    pfd = dirs.open(parent, create=False)
                    fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
                    try:
                        self._apply_fd_meta(fd, entry)
                    finally:
                        os.close(fd)
                except (OSError, RestoreRefused) as exc:
                    self._error(path, exc)
        finally:
            dirs.close()


def _iso(ts: float) -> str:
    import time

    whole = int(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts - whole) * 1e6):06d}Z"


class RestoreBlocked(RestoreRefused):
    """Refused before writing, with every reason listed (``extra`` goes into the JSON error document)."""

    template = "restore refused: {msg}"
    kind = "restore_refused"

    def __init__(self, msg: str, problems: list[dict[str, str]]) -> None:
        super().__init__(msg)
        self.extra = {"problems": problems}


def restore_snapshot(
    repo: Any,
    snapshot: str,
    target_dir: str | bytes | os.PathLike[str],
    *,
    include: Sequence[str | bytes] = (),
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Restore one snapshot with steps 1-4 of the module docstring; returns the result document.

    ``repo`` needs ``load_snapshot``, ``read_tree``, ``has_blob``, ``load_blob``.
    Raises ``RestoreRefused`` (exit 8) before anything is written when the
    tree is unreadable, a path is unsafe, a blob is missing or fails
    authentication, or something is in the way.
    """
    import time

    from fleetsafe.errors import IntegrityError

    t0 = time.time()
    manifest = repo.load_snapshot(snapshot)
    tree_ids = list(manifest.get("tree") or [])
    try:
        plan = plan_restore(lambda: repo.read_tree(tree_ids), include)
    except IntegrityError as exc:
        # A tree that fails to decrypt or parse (including paths the format refuses) is an
        # integrity failure of the restore source: refuse, nothing has been written.
        raise RestoreBlocked(f"snapshot {manifest['id'][:12]} tree failed its integrity check: {exc}",
                             [{"object": "tree", "problem": str(exc)}]) from exc
    cache = BlobCache(lambda cid: repo.load_blob(cid))
    problems = check_integrity(plan, repo.has_blob, cache)
    if problems:
        raise RestoreBlocked(f"{len(problems)} blob(s) missing or damaged, e.g. {problems[0]['object']}: "
                             f"{problems[0]['problem']}", problems)
    writer = RestoreWriter(target_dir, overwrite=overwrite, progress=progress)
    conflicts = writer.preflight(plan)
    if conflicts:
        raise RestoreBlocked(f"{len(conflicts)} path(s) in the way, e.g. {conflicts[0]['path']}: "
                             f"{conflicts[0]['problem']}",
                             [{"object": c["path"], "problem": c["problem"]} for c in conflicts])
    stats = writer.write(plan, cache.load)
    return {
        "snapshot": manifest["id"],
        "snapshot_time": manifest.get("start"),
        "start": _iso(t0),
        "end": _iso(time.time()),
        "duration_seconds": round(time.time() - t0, 3),
        "target_dir": display_path(os.fsencode(target_dir)),
        "files": stats.files,
        "dirs": stats.dirs,
        "symlinks": stats.symlinks,
        "hardlinks": stats.hardlinks,
        "other": stats.other,
        "bytes": stats.bytes,
        "blobs_verified": len(plan.blob_ids),
        "status": "partial" if stats.errors else "success",
        "errors": stats.errors,
        "warnings": stats.warnings,
        "data_sets": ([display_path(b"/" + normalise_include(p)) for p in include] if include
                      else list(manifest.get("paths") or [])),
    }

