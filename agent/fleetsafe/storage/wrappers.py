"""Cross-cutting storage concerns as wrappers, not flags (STYLE 10).

* ``RetryingBackend`` retries ``BackendConnectionError`` - and nothing else:
  a missing object, a full disk, a refused login or an untrusted host key do
  not change by asking again.  Between attempts it calls the inner backend's
  ``reconnect()`` and sleeps a bounded exponential backoff with jitter
  (``backoff * 2**n``, at most ``max_backoff``; jitter spreads a fleet of
  hosts whose timers fire at the same minute).  All operations are safe to
  repeat: ``store`` replaces atomically, reads have no effect; a ``delete``
  whose reply was lost is detected (``ObjectNotFound`` on a retry counts as
  done).
* ``FaultyBackend`` injects failures into a real backend for tests: mocks are
  for fault injection only, the data path underneath stays real.
"""

from __future__ import annotations

import builtins
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TypeVar

from fleetsafe.errors import (
    BackendConnectionError,
    ObjectNotFound,
    StorageError,
    StorageFull,
)
from fleetsafe.storage.base import Backend, ObjectInfo

T = TypeVar("T")


class RetryingBackend(Backend):
    """Retry transient connection failures of ``inner``.

    ``attempts`` is the total number of tries (1 = no retry).  The last
    ``BackendConnectionError`` is raised when they are used up.
    ``on_retry(op, attempt, exc, delay)`` is called before each sleep (for
    logging or counting).
    """

    def __init__(
        self,
        inner: Backend,
        attempts: int = 4,
        backoff: float = 0.5,
        *,
        max_backoff: float = 8.0,
        jitter: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str, int, BackendConnectionError, float], None] | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.inner = inner
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self._sleep = sleep
        self._on_retry = on_retry
        self.location = inner.location

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        d = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        # "Equal jitter": at least half the delay, so retries still back off.
        return d * random.uniform(0.5, 1.0) if self.jitter else d

    def _retry(self, op: str, fn: Callable[[], T]) -> T:
        attempt = 1
        while True:
            try:
                return fn()
            except BackendConnectionError as exc:
                if attempt >= self.attempts:
                    raise
                delay = self.delay(attempt)
                if self._on_retry is not None:
                    self._on_retry(op, attempt, exc, delay)
                try:
                    self.inner.reconnect()
                except StorageError:
                    pass  # reconnect only drops state; the next attempt reports the real error
                self._sleep(delay)
                attempt += 1

    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        return self._retry("load", lambda: self.inner.load(name, offset, size))

    def store(self, name: str, data: bytes) -> None:
        self._retry("store", lambda: self.inner.store(name, data))

    def info(self, name: str) -> ObjectInfo:
        return self._retry("info", lambda: self.inner.info(name))

    def delete(self, name: str) -> None:
        tried = False

        def once() -> None:
            nonlocal tried
            first, tried = not tried, True
            try:
                self.inner.delete(name)
            except ObjectNotFound:
                if first:
                    raise
                # An earlier attempt deleted it and then lost the reply.

        self._retry("delete", once)

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        return self._retry("list", lambda: self.inner.list(prefix))

    def reconnect(self) -> None:
        self.inner.reconnect()

    def close(self) -> None:
        self.inner.close()


class FaultyBackend(Backend):
    """Test double around a real backend that injects the failures asked for.

    All knobs are plain attributes, so a test can change them between calls
    (``fb.down = True``).  Call numbers are 1-based and counted per operation
    in ``calls`` (``calls["store"]``).

    * ``down``: every call raises ``BackendConnectionError`` (target offline).
    * ``connection_errors``: the next N calls raise it, then work again
      (a short outage).
    * ``flaky_every``: every k-th call overall raises it (a bad link), for
      the operations in ``flaky_ops`` (default: all).
    * ``fail_store_at``: the store calls with these numbers raise
      ``store_error`` (default ``BackendConnectionError``) without storing.
    * ``full_after_bytes``: a store that would bring the bytes stored through
      this wrapper above the limit raises ``StorageFull``.
    * ``truncate_load``: loads return N bytes fewer than the target holds.
    * ``flip_byte_on_load``: loads return data with this byte offset inverted.
    * ``corrupt_prefix``: the two load faults only hit names with this prefix.
    """

    def __init__(
        self,
        inner: Backend,
        *,
        down: bool = False,
        connection_errors: int = 0,
        flaky_every: int | None = None,
        flaky_ops: Iterable[str] | None = None,
        fail_store_at: int | Iterable[int] | None = None,
        store_error: type[StorageError] = BackendConnectionError,
        full_after_bytes: int | None = None,
        truncate_load: int | None = None,
        flip_byte_on_load: int | None = None,
        corrupt_prefix: str = "",
    ) -> None:
        self.inner = inner
        self.location = inner.location
        self.down = down
        self.connection_errors = connection_errors
        self.flaky_every = flaky_every
        self.flaky_ops = set(flaky_ops) if flaky_ops is not None else None
        if isinstance(fail_store_at, int):
            fail_store_at = [fail_store_at]
        self.fail_store_at: set[int] = set(fail_store_at or ())
        self.store_error = store_error
        self.full_after_bytes = full_after_bytes
        self.truncate_load = truncate_load
        self.flip_byte_on_load = flip_byte_on_load
        self.corrupt_prefix = corrupt_prefix
        self.calls: Counter[str] = Counter()
        self.stored_bytes = 0
        self.reconnects = 0

    def _gate(self, op: str) -> None:
        self.calls[op] += 1
        self.calls["total"] += 1
        if self.down:
            raise BackendConnectionError("injected: target down", backend=self.location)
        if self.connection_errors > 0:
            self.connection_errors -= 1
            raise BackendConnectionError("injected: connection reset", backend=self.location)
        flaky_op = self.flaky_ops is None or op in self.flaky_ops
        if self.flaky_every and flaky_op and self.calls["total"] % self.flaky_every == 0:
            raise BackendConnectionError("injected: flaky link", backend=self.location)

    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        self._gate("load")
        data = self.inner.load(name, offset, size)
        if name.startswith(self.corrupt_prefix):
            if self.truncate_load:
                data = data[: max(0, len(data) - self.truncate_load)]
            pos = self.flip_byte_on_load
            if pos is not None and 0 <= pos < len(data):
                data = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]
        return data

    def store(self, name: str, data: bytes) -> None:
        self._gate("store")
        if self.calls["store"] in self.fail_store_at:
            if issubclass(self.store_error, (BackendConnectionError, StorageFull)):
                raise self.store_error(f"injected failure of store #{self.calls['store']}", backend=self.location)
            raise self.store_error(f"injected failure of store #{self.calls['store']} of {name}")
        if self.full_after_bytes is not None and self.stored_bytes + len(data) > self.full_after_bytes:
            raise StorageFull("injected: no space left", backend=self.location)
        self.inner.store(name, data)
        self.stored_bytes += len(data)

    def info(self, name: str) -> ObjectInfo:
        self._gate("info")
        return self.inner.info(name)

    def delete(self, name: str) -> None:
        self._gate("delete")
        self.inner.delete(name)

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        self._gate("list")
        return self.inner.list(prefix)

    def reconnect(self) -> None:
        self.reconnects += 1
        self.inner.reconnect()

    def close(self) -> None:
        self.inner.close()
