"""The storage interface every target implements.

Contract (docs/storage.md, docs/architecture.md "Storage"):

* Objects are named by validated relative names: ``/``-separated components of
  ``[A-Za-z0-9._-]``, none empty, none starting with ``.`` (so no ``..``, no
  hidden temp files), at most 255 bytes in all.  ``validate_name`` enforces it;
  every backend calls it before touching anything, so a name can never point
  outside the repository root.
* ``store`` is atomic: a reader sees the whole object or nothing.  Objects are
  immutable by convention; storing an existing name replaces it atomically.
* ``load`` returns exactly ``size`` bytes from ``offset`` (all remaining bytes
  when ``size`` is None) or raises ``ObjectNotFound``; a short read raises
  ``IntegrityError``.
* ``list(prefix)`` returns every object whose name starts with ``prefix`` (a
  plain string prefix, not only a directory), sorted by name.
* ``delete`` of a missing object raises ``ObjectNotFound``.
* Errors are ours: ``ObjectNotFound``, ``BackendConnectionError`` (transient,
  retryable), ``UntrustedTarget``, ``StorageFull`` and ``StorageError``
  (permanent).  Library exceptions never leave a backend.
* A backend object is not thread-safe: use one per thread.

This layer knows nothing about packs, keys or snapshots.
"""

from __future__ import annotations

import builtins
import os
import re
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleetsafe.errors import (
    ConfigError,
    InvalidObjectName,
    InvalidRange,
    ObjectNotFound,
)

if TYPE_CHECKING:  # typing.Self is 3.11+; the agent still runs on 3.9 hosts
    from typing import Self

_COMPONENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
MAX_NAME = 255

#: prefix of the temporary names backends write before the atomic rename; it
#: starts with ``.`` so it can never collide with a valid object name.
TEMP_PREFIX = ".tmp-"


def validate_name(name: str, *, prefix: bool = False) -> str:
    """Return ``name`` if it is a safe relative object name, else raise.

    With ``prefix=True`` the empty string (the whole repository), a trailing
    ``/`` and a partial last component (``packs/a``) are allowed, for ``list``.
    """
    if not isinstance(name, str):
        raise InvalidObjectName("not a string", name=repr(name))
    check = name
    if prefix:
        if check == "":
            return name
        check = check.removesuffix("/")
    if not check or len(check.encode()) > MAX_NAME:
        raise InvalidObjectName("empty or longer than 255 bytes", name=name)
    for part in check.split("/"):
        if not _COMPONENT.match(part):
            raise InvalidObjectName("components must match [A-Za-z0-9_-][A-Za-z0-9._-]*", name=name)
    return name


def check_range(name: str, offset: int, size: int | None) -> None:
    """Raise ``InvalidRange`` for a negative offset or size."""
    if offset < 0 or (size is not None and size < 0):
        raise InvalidRange(name=name, offset=offset, size=size)


def dir_may_match(rel_dir: str, prefix: str) -> bool:
    """True if objects below directory ``rel_dir`` ("" = root) can start with ``prefix``.

    Lets ``list`` walk only the directories that can hold matching names
    instead of the whole repository.
    """
    if not rel_dir:
        return True
    d = rel_dir + "/"
    return d.startswith(prefix) or prefix.startswith(d)


def check_secret_file(path: str, what: str) -> None:
    """Refuse a missing secret file or one that other users can read.

    Like OpenSSH with private keys: a secret that every local user can read
    is not a secret, and refusing early is clearer than a later auth failure.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path}: not a regular file")
    if st.st_mode & 0o007:
        raise ConfigError(f"{what} {path}: mode {stat.S_IMODE(st.st_mode):04o} lets every user read it; chmod 0600")


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int


class Backend(ABC):
    """One storage target.  Subclasses implement the five primitives."""

    #: short human description without secrets, e.g. ``local:/srv/backup``
    location: str = "?"

    @abstractmethod
    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        """Exactly ``size`` bytes from ``offset`` (or all the rest); ObjectNotFound, IntegrityError."""

    @abstractmethod
    def store(self, name: str, data: bytes) -> None:
        """Write ``data`` atomically under ``name``, creating parent directories."""

    @abstractmethod
    def info(self, name: str) -> ObjectInfo:
        """Size of one object; ObjectNotFound if it does not exist."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove one object; ObjectNotFound if it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object whose name starts with ``prefix``, sorted by name."""

    def exists(self, name: str) -> bool:
        try:
            self.info(name)
        except ObjectNotFound:
            return False
        return True

    def reconnect(self) -> None:
        """Drop any connection so that the next call opens a new one.

        ``RetryingBackend`` calls it between attempts.  A no-op for backends
        without connections.
        """

    def close(self) -> None:
        """Release connections.  Safe to call twice."""

    def __repr__(self) -> str:
        # Only the location: never credentials (they must not reach logs).
        return f"{type(self).__name__}({self.location})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
