"""The storage interface every target implements.

Contract (docs/architecture.md, "Storage"):

* Objects are named by validated relative names: ``/``-separated components of
  ``[A-Za-z0-9._-]``, none empty, none starting with ``.`` (so no ``..``, no
  hidden temp files), at most 255 bytes in all.  ``validate_name`` enforces it;
  every backend calls it before touching anything, so a name can never point
  outside the repository root.
* ``store`` is atomic: a reader sees the whole object or nothing.  Objects are
  immutable by convention; storing an existing name replaces it atomically.
* ``load`` returns exactly ``size`` bytes from ``offset`` (all when ``size`` is
  None) or raises ``ObjectNotFound``; a short read raises ``IntegrityError``.
* Errors are ours: ``ObjectNotFound``, ``BackendConnectionError`` (transient,
  retryable), ``StorageFull`` and ``StorageError`` (permanent).  Library
  exceptions never leave a backend.

This layer knows nothing about packs, keys or snapshots.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from fleetsafe.errors import InvalidObjectName

_COMPONENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
MAX_NAME = 255


def validate_name(name: str, *, prefix: bool = False) -> str:
    """Return ``name`` if it is a safe relative object name, else raise.

    With ``prefix=True`` the empty string (the whole repository) and a
    trailing ``/`` are allowed, for ``list``.
    """
    if not isinstance(name, str):
        raise InvalidObjectName("not a string", name=repr(name))
    check = name
    if prefix:
        if check == "":
            return name
        check = check.rstrip("/")
    if not check or len(check.encode()) > MAX_NAME:
        raise InvalidObjectName("empty or longer than 255 bytes", name=name)
    for part in check.split("/"):
        if not _COMPONENT.match(part):
            raise InvalidObjectName("components must match [A-Za-z0-9_-][A-Za-z0-9._-]*", name=name)
    return name


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int


class Backend(ABC):
    """One storage target.  Subclasses implement the five primitives."""

    #: short human description without secrets, e.g. ``local:/srv/backup``
    location: str = "?"

    @abstractmethod
    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes: ...

    @abstractmethod
    def store(self, name: str, data: bytes) -> None: ...

    @abstractmethod
    def info(self, name: str) -> ObjectInfo: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose name starts with ``prefix``, sorted by name."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    def exists(self, name: str) -> bool:
        from fleetsafe.errors import ObjectNotFound

        try:
            self.info(name)
        except ObjectNotFound:
            return False
        return True

    def close(self) -> None:
        """Release connections.  Safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
