"""Walk the filesystem for a backup: metadata of every path, never following symlinks.

Contract:

* ``walk(sources, options, on_error)`` yields ``Item``s -- an absolute byte
  path and a tree entry dict (docs/architecture.md, "Tree entries") -- in
  pre-order with siblings sorted by the bytes of their names, which is the
  order of ``path.split(b"/")`` tuples.  That order puts every directory
  before its children and every hard link's first path before the others,
  which restore relies on.
* Paths are ``bytes`` from start to end (``os.fsencode``), so names that are
  not valid UTF-8 are stored byte for byte.  Entry paths are relative to
  ``/``: source ``/etc`` gives ``etc``, ``etc/passwd``; the ancestors of a
  source (``var``, ``var/lib`` for ``/var/lib/x``) are emitted as directory
  entries so a restore recreates their modes and owners.
* Nothing is followed: ``lstat`` for metadata, ``O_NOFOLLOW`` for reads; a
  symlink is recorded as a symlink, also when it is a source.
* ``one_file_system``: a directory on another device than its source root is
  recorded (so the mount point exists after restore) but not descended.
* ``exclude``: ``fnmatch`` globs; a pattern containing ``/`` is matched
  against the absolute path, any other against the name.  ``*`` also matches
  ``/``, so ``/var/cache/*`` excludes everything below.  An excluded
  directory is not descended.
* Extended attributes of files and directories (ACLs, ``security.capability``,
  ``user.*``) go into ``entry["xattrs"]`` (name -> base64 value) when there
  are any; symlinks' are not recorded.
* A path that vanishes or cannot be listed/stat'ed goes to ``on_error(path,
  exc)`` and the walk continues; it never raises ``OSError`` itself.

``open_for_read`` opens one regular file for the backup with
``O_NOFOLLOW|O_NOATIME`` (when the kernel permits it) and checks it is still
the file that was walked.

This module knows nothing of repositories; hard-link detection lives in
``fleetsafe.backup`` because it depends on whether the first path was read.
"""

from __future__ import annotations

import errno
import fnmatch
import grp
import os
import pwd
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

OnError = Callable[[bytes, BaseException], None]

#: entry ``type`` values (docs/architecture.md)
FILE, DIR, SYMLINK, HARDLINK, FIFO, OTHER = "file", "dir", "symlink", "hardlink", "fifo", "other"

_NOATIME = getattr(os, "O_NOATIME", 0)


@dataclass(frozen=True)
class WalkOptions:
    exclude: tuple[str, ...] = ()
    one_file_system: bool = True
    #: record extended attributes (ACLs, file capabilities, user.*) of files and directories
    xattrs: bool = True


@dataclass
class Item:
    """One walked path: ``abspath`` to read from, ``entry`` for the tree, ``nlink`` for hard links."""

    abspath: bytes
    entry: dict[str, Any]
    nlink: int = 1


@dataclass
class _Names:
    """uid/gid -> name caches (one lookup per id per run)."""

    users: dict[int, str] = field(default_factory=dict)
    groups: dict[int, str] = field(default_factory=dict)

    def user(self, uid: int) -> str:
        if uid not in self.users:
            try:
                self.users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self.users[uid] = ""
        return self.users[uid]

    def group(self, gid: int) -> str:
        if gid not in self.groups:
            try:
                self.groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self.groups[gid] = ""
        return self.groups[gid]


#: errnos meaning "this filesystem has no extended attributes" (not an error of the path)
_NO_XATTR = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def read_xattrs(abspath: bytes) -> dict[str, str]:
    """Extended attributes of ``abspath`` (not following symlinks), values base64.

    ACLs (``system.posix_acl_*``) and file capabilities (``security.capability``,
    without which a restored ``ping`` no longer works) are extended attributes too.
    An attribute that vanishes between list and get is skipped; a filesystem
    without xattrs gives ``{}``.  Names are kept as text (surrogate-escaped if
    they are not UTF-8).
    """
    import base64

    try:
        names = os.listxattr(abspath, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_XATTR:
            return {}
        raise
    out: dict[str, str] = {}
    for name in sorted(names):
        try:
            value = os.getxattr(abspath, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, *_NO_XATTR):
                continue
            raise
        out[name] = base64.b64encode(value).decode("ascii")
    return out


def entry_type(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    if stat.S_ISFIFO(mode):
        return FIFO
    return OTHER


def make_entry(rel: bytes, st: os.stat_result, names: _Names, abspath: bytes | None = None) -> dict[str, Any]:
    """A tree entry from ``lstat`` data (content/target filled by the caller or here for symlinks)."""
    kind = entry_type(st.st_mode)
    entry: dict[str, Any] = {
        "path": rel,
        "type": kind,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "user": names.user(st.st_uid),
        "group": names.group(st.st_gid),
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
        "dev": st.st_dev,
        "size": st.st_size if kind == FILE else 0,
    }
    if kind == FILE:
        entry["content"] = []
    return entry


def _split(path: bytes) -> list[bytes]:
    return [p for p in path.split(b"/") if p]


def normalise_sources(sources: Iterable[str | bytes]) -> list[bytes]:
    """Absolute byte paths, sorted in walk order, with sources inside other sources dropped."""
    out: list[bytes] = []
    for s in sources:
        b = os.fsencode(s)
        if not b.startswith(b"/"):
            raise ValueError(f"source must be absolute: {b!r}")
        out.append(b"/" + b"/".join(_split(b)))
    out = sorted(set(out), key=_split)
    kept: list[bytes] = []
    for s in out:
        parts = _split(s)
        if any(_split(k) == parts[: len(_split(k))] for k in kept):
            continue  # nested in an earlier source: already walked
        kept.append(s)
    return kept


class Walker:
    """Walk sources in tree order.  ``stats`` counts what was seen (for progress)."""

    def __init__(self, options: WalkOptions, on_error: OnError) -> None:
        self.options = options
        self.on_error = on_error
        self.names = _Names()
        self._patterns_abs = [os.fsencode(p) for p in options.exclude if "/" in p]
        self._patterns_name = [os.fsencode(p) for p in options.exclude if "/" not in p]
        self._emitted_dirs: set[bytes] = set()
        self.excluded = 0
        self.skipped_mounts: list[bytes] = []
        #: things worth telling the operator that are not errors (e.g. a source that is a symlink)
        self.warnings: list[str] = []

    def excluded_path(self, abspath: bytes) -> bool:
        name = abspath.rsplit(b"/", 1)[-1]
        if any(fnmatch.fnmatchcase(name, p) for p in self._patterns_name):
            return True
        return any(fnmatch.fnmatchcase(abspath, p) for p in self._patterns_abs)

    def _lstat(self, abspath: bytes) -> os.stat_result | None:
        try:
            return os.lstat(abspath)
        except OSError as exc:
            self.on_error(abspath, exc)
            return None

    def _item(self, abspath: bytes, st: os.stat_result) -> Item | None:
        rel = abspath.lstrip(b"/")
        entry = make_entry(rel, st, self.names)
        if entry["type"] == SYMLINK:
            try:
                entry["target"] = os.readlink(abspath)
            except OSError as exc:
                self.on_error(abspath, exc)
                return None
        elif self.options.xattrs:
            try:
                xattrs = read_xattrs(abspath)
            except OSError as exc:
                self.on_error(abspath, exc)
                return None
            if xattrs:
                # Only when present: trees without xattrs stay byte-identical (dedup of tree blobs).
                entry["xattrs"] = xattrs
        return Item(abspath, entry, st.st_nlink)

    def _ancestors(self, source: bytes) -> Iterator[Item]:
        parts = _split(source)
        for i in range(1, len(parts)):
            abspath = b"/" + b"/".join(parts[:i])
            if abspath in self._emitted_dirs:
                continue
            st = self._lstat(abspath)
            if st is None:
                return
            if not stat.S_ISDIR(st.st_mode):
                # A parent is a symlink (e.g. /var/run -> /run): the source is not under a real
                # directory chain; record the error instead of following the link.
                self.on_error(source, OSError(errno.ENOTDIR, f"parent {os.fsdecode(abspath)} is not a directory"))
                return
            self._emitted_dirs.add(abspath)
            item = self._item(abspath, st)
            if item is not None:
                yield item

    def walk(self, sources: Iterable[str | bytes]) -> Iterator[Item]:
        for source in normalise_sources(sources):
            yield from self._ancestors(source)
            if source == b"/":
                st = self._lstat(source)
                if st is not None:
                    yield from self._children(source, st.st_dev)
                continue
            st = self._lstat(source)
            if st is None:
                continue
            item = self._item(source, st)
            if item is None:
                continue
            if item.entry["type"] == SYMLINK:
                # Never followed, even as a source: say so, or "/home -> /data/home" would
                # quietly back up one link instead of everyone's files.
                self.warnings.append(
                    f"source {os.fsdecode(source)} is a symlink to {os.fsdecode(item.entry['target'])}; "
                    "only the link is stored (list the target as a source)"
                )
            yield item
            if item.entry["type"] == DIR:
                self._emitted_dirs.add(source)
                yield from self._children(source, st.st_dev)

    def _children(self, dirpath: bytes, root_dev: int) -> Iterator[Item]:
        # Iterative pre-order: a stack of (directory, sorted remaining names) so deep trees
        # cannot hit the recursion limit.
        stack: list[tuple[bytes, list[bytes]]] = []
        names = self._listdir(dirpath)
        if names is not None:
            stack.append((dirpath, names))
        while stack:
            parent, remaining = stack[-1]
            if not remaining:
                stack.pop()
                continue
            name = remaining.pop()  # lists are reversed: pop() from the end is O(1)
            abspath = parent + name if parent.endswith(b"/") else parent + b"/" + name
            if self.excluded_path(abspath):
                self.excluded += 1
                continue
            st = self._lstat(abspath)
            if st is None:
                continue
            item = self._item(abspath, st)
            if item is None:
                continue
            yield item
            if item.entry["type"] != DIR:
                continue
            if self.options.one_file_system and st.st_dev != root_dev:
                self.skipped_mounts.append(abspath)
                continue
            sub = self._listdir(abspath)
            if sub:
                stack.append((abspath, sub))

    def _listdir(self, dirpath: bytes) -> list[bytes] | None:
        try:
            with os.scandir(dirpath) as it:
                names = [e.name for e in it]
        except OSError as exc:
            self.on_error(dirpath, exc)
            return None
        names.sort(reverse=True)
        return names


def walk(sources: Iterable[str | bytes], options: WalkOptions, on_error: OnError) -> Iterator[Item]:
    return Walker(options, on_error).walk(sources)


class FileChanged(OSError):
    """The path no longer names the file that was walked (replaced between lstat and open)."""


def open_for_read(abspath: bytes) -> tuple[int, os.stat_result]:
    """Open a walked regular file without following links; return (fd, fstat).

    The caller compares the fstat with the walked entry: a file replaced by
    rename after the walk (an editor saving) is read as it is now, and its
    entry is refreshed from the fstat.

    ``O_NOATIME`` keeps backups from touching access times, but the kernel only
    allows it to the file's owner or CAP_FOWNER, so EPERM retries without it.
    ``O_NONBLOCK`` makes a file swapped for a FIFO after the walk fail fast
    instead of hanging the run.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(abspath, flags | _NOATIME)
    except PermissionError:
        if not _NOATIME:
            raise
        fd = os.open(abspath, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileChanged(errno.ESTALE, "no longer a regular file (replaced during the backup)")
    except BaseException:
        os.close(fd)
        raise
    return fd, st
