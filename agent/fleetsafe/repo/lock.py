"""Repository locks: ``locks/<random hex>`` objects (format v1).

A lock object is plaintext JSON ``{"host", "pid", "time", "exclusive"}``
(``time`` = Unix seconds of the last refresh).  It holds no secret: anyone
who can list the repository may see who is working on it.

Protocol (the storage has no compare-and-swap, so this is optimistic, like
restic): write our own lock, then list all locks; if another live lock
conflicts (it is exclusive, or we want exclusive), delete ours and raise
``LockedError`` naming the holder.  Two writers racing both back off (safe;
the next timer run retries).  A lock is **stale**, and ignored, when it was
not refreshed for ``STALE_AFTER`` seconds, or when it belongs to this host
and its pid is not alive; stale locks of this host are removed.  While held,
the lock is rewritten with a new time by ``maybe_refresh`` once
``REFRESH_INTERVAL`` seconds have passed; the repository calls it on every
blob it adds or looks up, so a long backup is never taken for stale.  (No
background thread: backends are not thread-safe.)
"""

from __future__ import annotations

import json
import os
import secrets
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from fleetsafe.errors import FormatError, LockedError, ObjectNotFound
from fleetsafe.storage.base import Backend

if TYPE_CHECKING:  # typing.Self is 3.11+; the agent still runs on 3.9 hosts
    from typing import Self

LOCK_PREFIX = "locks/"
STALE_AFTER = 3600  # seconds without refresh
REFRESH_INTERVAL = 300


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def parse_lock(data: bytes, name: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(what=name, expected="lock JSON", got=str(exc)) from exc
    if not (isinstance(obj, dict) and isinstance(obj.get("host"), str) and isinstance(obj.get("pid"), int)
            and isinstance(obj.get("time"), (int, float)) and isinstance(obj.get("exclusive"), bool)):
        raise FormatError(what=name, expected="{host, pid, time, exclusive}", got=str(obj)[:80])
    return obj


def is_stale(lock: dict[str, Any], *, host: str, now: float, stale_after: float = STALE_AFTER) -> bool:
    if now - lock["time"] > stale_after:
        return True
    return lock["host"] == host and not pid_alive(lock["pid"])


def describe(lock: dict[str, Any]) -> str:
    kind = "exclusive" if lock["exclusive"] else "shared"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(lock["time"]))
    return f"{lock['host']} pid {lock['pid']} ({kind}, refreshed {when})"


class RepoLock:
    """Context manager holding a repository lock; ``LockedError`` on conflict."""

    def __init__(self, backend: Backend, *, host: str, exclusive: bool = True, pid: int | None = None,
                 stale_after: float = STALE_AFTER, refresh_interval: float = REFRESH_INTERVAL) -> None:
        self.backend = backend
        self.host = host
        self.pid = os.getpid() if pid is None else pid
        self.exclusive = exclusive
        self.stale_after = stale_after
        self.refresh_interval = refresh_interval
        self.name = f"{LOCK_PREFIX}{secrets.token_hex(16)}"
        self._last_refresh = 0.0
        self.held = False

    def _body(self) -> bytes:
        return json.dumps({"host": self.host, "pid": self.pid, "time": int(time.time()),
                           "exclusive": self.exclusive}, sort_keys=True).encode()

    def acquire(self) -> Self:
        self.backend.store(self.name, self._body())
        try:
            self._check_conflicts()
        except BaseException:
            self._delete_own()
            raise
        self.held = True
        self._last_refresh = time.monotonic()
        return self

    def _check_conflicts(self) -> None:
        now = time.time()
        for info in self.backend.list(LOCK_PREFIX):
            if info.name == self.name:
                continue
            try:
                other = parse_lock(self.backend.load(info.name), info.name)
            except ObjectNotFound:
                continue  # released while we listed
            except FormatError:
                # An unreadable lock is treated as held: better a skipped run than two writers.
                raise LockedError(holder=f"unreadable lock {info.name}") from None
            if is_stale(other, host=self.host, now=now, stale_after=self.stale_after):
                if other["host"] == self.host and not pid_alive(other["pid"]):
                    try:
                        self.backend.delete(info.name)
                    except ObjectNotFound:
                        pass
                continue
            if self.exclusive or other["exclusive"]:
                raise LockedError(holder=describe(other), lock=info.name)

    def refresh(self) -> None:
        """Rewrite the lock with the current time."""
        if self.held:
            self.backend.store(self.name, self._body())
            self._last_refresh = time.monotonic()

    def maybe_refresh(self) -> None:
        """``refresh`` if ``refresh_interval`` has passed since the last one (cheap otherwise)."""
        if self.held and time.monotonic() - self._last_refresh >= self.refresh_interval:
            self.refresh()

    def _delete_own(self) -> None:
        try:
            self.backend.delete(self.name)
        except ObjectNotFound:
            pass

    def release(self) -> None:
        if self.held:
            self.held = False
            self._delete_own()

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
