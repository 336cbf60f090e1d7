"""Local directory backend (LOC-ONSITE): a disk or a mounted filesystem.

Atomic writes: temp file in the object's directory (a name starting with
``.`` so ``list`` and ``validate_name`` never see it), ``fsync``, ``rename``,
then ``fsync`` of the directory so the rename survives a power cut.  A crash
leaves at worst a stray ``.tmp-*`` file, which ``list`` ignores.
"""

from __future__ import annotations

import builtins
import errno
import os
import secrets
import stat
from pathlib import Path

from fleetsafe.errors import IntegrityError, ObjectNotFound, StorageError, StorageFull
from fleetsafe.storage.base import (
    TEMP_PREFIX,
    Backend,
    ObjectInfo,
    check_range,
    dir_may_match,
    validate_name,
)

# A missing object, a path through a file ("a" is an object, "a/b" asked for)
# and a directory where an object was expected all mean "no such object".
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP)


def _translate(exc: OSError, name: str, location: str, *, writing: bool = False) -> Exception:
    """Map an OSError to our tree.  ``writing``: a missing path component is
    then a permanent error (a file where a directory should be), not "not found"."""
    if exc.errno in _MISSING and not writing:
        return ObjectNotFound(name=name, backend=location)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(str(exc.strerror), backend=location)
    err = StorageError(f"{location}: {name}: {exc.strerror}")
    err.errno = exc.errno  # type: ignore[attr-defined]  # lets read-only commands tell EROFS/EACCES apart
    return err


class LocalBackend(Backend):
    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root)
        self.location = f"local:{self.root}"
        try:
            if create:
                self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise _translate(exc, "", self.location, writing=True) from exc
        if not self.root.is_dir():
            raise StorageError(f"{self.location}: not a directory")

    def _path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        path = self._path(name)
        check_range(name, offset, size)
        try:
            # O_NOFOLLOW: an object is never a symlink; following one could
            # read outside the repository root.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise OSError(errno.EISDIR, "not a regular file")
                fh.seek(offset)
                data = fh.read() if size is None else fh.read(size)
        except OSError as exc:
            raise _translate(exc, name, self.location) from exc
        if size is not None and len(data) != size:
            raise IntegrityError(f"{self.location}: {name}: short read ({len(data)} of {size} bytes at {offset})")
        return data

    def store(self, name: str, data: bytes) -> None:
        path = self._path(name)
        # Truncated: a 255-byte component plus the suffix would exceed NAME_MAX.
        tmp = path.parent / f"{TEMP_PREFIX}{path.name[:100]}-{secrets.token_hex(6)}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise _translate(exc, name, self.location, writing=True) from exc

    def info(self, name: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(name), follow_symlinks=False)
        except OSError as exc:
            raise _translate(exc, name, self.location) from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(name=name, backend=self.location)
        return ObjectInfo(name, st.st_size)

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        validate_name(prefix, prefix=True)
        # Walk only the directory part of the prefix, then filter by the rest.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        out: builtins.list[ObjectInfo] = []
        if not start.is_dir():
            return out

        def fail(exc: OSError) -> None:
            # os.walk skips unreadable directories by default; a listing that
            # silently misses objects would make replication or prune wrong.
            raise _translate(exc, prefix, self.location, writing=True) from exc

        for dirpath, dirnames, filenames in os.walk(start, onerror=fail):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            # Hidden directories are never ours; others only if they can hold matches.
            dirnames[:] = [
                d for d in dirnames if not d.startswith(".") and dir_may_match(f"{rel_dir}/{d}".lstrip("/"), prefix)
            ]
            for fn in filenames:
                if fn.startswith("."):
                    continue
                rel = f"{rel_dir}/{fn}" if rel_dir else fn
                if rel.startswith(prefix):
                    try:
                        st = os.stat(os.path.join(dirpath, fn), follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted while listing
                    if stat.S_ISREG(st.st_mode):
                        out.append(ObjectInfo(rel, st.st_size))
        out.sort(key=lambda o: o.name)
        return out

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except OSError as exc:
            raise _translate(exc, name, self.location) from exc
