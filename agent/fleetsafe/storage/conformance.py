"""The one conformance suite every storage backend must pass (STYLE 11).

``run_conformance(backend)`` exercises the ``base.Backend`` contract on a live
target and returns one result per check; it never raises for a failed check.
It is what the test-suite runs against local, SFTP, S3 and the wrappers, and
what ``fleetsafe target check`` runs for users against their real targets.

Safety: everything happens under a scratch prefix
``fleetsafe-check/<random>/`` that no repository object can have (repository
names start with ``config``, ``keys/``, ``packs/``, ``index/``, ``snapshots/``,
``locks/``), and every object written is deleted again, also when a check
fails.  Directory-based targets may keep the empty ``fleetsafe-check/``
directory.  The large-object check writes 17 MiB.

Result format (stable, for ``--json``)::

    {"check": "round_trip", "ok": true, "detail": "", "seconds": 0.012}

``ok`` is ``None`` for checks skipped because the target became unreachable
(after the first ``BackendConnectionError`` the remaining checks are
skipped: they would only repeat the same error).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from fleetsafe.errors import (
    BackendConnectionError,
    IntegrityError,
    InvalidObjectName,
    ObjectNotFound,
    StorageError,
)
from fleetsafe.storage.base import Backend

#: "bigger than any single read/write buffer of the libraries": paramiko
#: packets are 32 KiB, our SFTP writes 1 MiB, S3 multipart starts at 8 MiB.
LARGE_SIZE = 17 * 1024 * 1024
INVALID_NAMES = ("../x", "/abs", "a//b", ".hidden", "a/../b", "a/./b", "", "x/", "a\\b", "a b", "a\x00b")
SCRATCH_ROOT = "fleetsafe-check"


class CheckFailed(AssertionError):
    """A conformance expectation did not hold (message says which)."""


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def _raises(exc_type: type[BaseException], fn: Callable[[], object], what: str) -> None:
    try:
        fn()
    except exc_type:
        return
    except Exception as exc:  # the point of the check: which type leaked
        raise CheckFailed(f"{what}: expected {exc_type.__name__}, got {type(exc).__module__}.{type(exc).__name__}: {exc}") from exc
    raise CheckFailed(f"{what}: expected {exc_type.__name__}, nothing raised")


class _Checks:
    """The individual checks; each writes only under ``self.base``."""

    def __init__(self, backend: Backend, base: str, large_size: int) -> None:
        self.b = backend
        self.base = base
        self.large_size = large_size
        self.written: set[str] = set()

    def n(self, rel: str) -> str:
        return self.base + rel

    def put(self, rel: str, data: bytes) -> str:
        name = self.n(rel)
        self.written.add(name)
        self.b.store(name, data)
        return name

    # --- checks --------------------------------------------------------------------------
    def round_trip(self) -> None:
        data = os.urandom(4096)
        name = self.put("rt/obj", data)
        _expect(self.b.load(name) == data, "load returned different bytes than stored")
        _expect(self.b.exists(name), "exists() is False right after store")

    def ranged_load(self) -> None:
        data = bytes(range(256)) * 64
        name = self.put("range/obj", data)
        for off, size in ((0, 1), (10, 100), (1000, 3000), (len(data) - 5, 5), (0, len(data))):
            got = self.b.load(name, off, size)
            _expect(got == data[off : off + size], f"load(offset={off}, size={size}) returned wrong bytes")
        _expect(self.b.load(name, 4000) == data[4000:], "load(offset=4000) must return the rest")
        _expect(self.b.load(name, 7, 0) == b"", "load(size=0) must return b''")
        _expect(self.b.load(name, len(data)) == b"", "load(offset=len) must return b''")
        _raises(IntegrityError, lambda: self.b.load(name, len(data) - 10, 20), "short read past the end")

    def overwrite_atomic(self) -> None:
        name = self.put("ow/obj", b"A" * 100_000)
        self.b.store(name, b"B" * 50_000)
        got = self.b.load(name)
        _expect(got == b"B" * 50_000, f"after overwrite got {len(got)} bytes, not exactly the new object")
        _expect(self.b.info(name).size == 50_000, "info().size not updated by overwrite")
        listed = [o.name for o in self.b.list(self.n("ow/"))]
        _expect(listed == [name], f"temp files visible after store: {listed}")

    def list_prefix_sorted(self) -> None:
        rels = ["ls/b/2", "ls/a/1", "ls/c", "ls/a/0", "ls/ab", "lsx/1"]
        for rel in rels:
            self.put(rel, rel.encode())
        got = [o.name for o in self.b.list(self.n("ls/"))]
        want = sorted(self.n(r) for r in rels if r.startswith("ls/"))
        _expect(got == want, f"list('ls/') = {got}, want {want}")
        got = [o.name for o in self.b.list(self.n("ls/a"))]
        want = sorted(self.n(r) for r in ("ls/a/0", "ls/a/1", "ls/ab"))
        _expect(got == want, f"list('ls/a') must match by string prefix: {got}, want {want}")
        sizes = {o.name: o.size for o in self.b.list(self.n("ls/a/"))}
        _expect(sizes == {self.n("ls/a/0"): 6, self.n("ls/a/1"): 6}, f"list sizes wrong: {sizes}")
        _expect(self.b.list(self.n("nothing-here/")) == [], "list of an unused prefix must be empty")

    def info_size(self) -> None:
        name = self.put("info/obj", b"x" * 12345)
        info = self.b.info(name)
        _expect(info.name == name and info.size == 12345, f"info() = {info}")

    def delete(self) -> None:
        name = self.put("del/obj", b"bye")
        self.b.delete(name)
        self.written.discard(name)
        _expect(not self.b.exists(name), "exists() still True after delete")
        _raises(ObjectNotFound, lambda: self.b.load(name), "load after delete")
        _raises(ObjectNotFound, lambda: self.b.delete(name), "delete of a deleted object")
        _expect(self.b.list(self.n("del/")) == [], "deleted object still listed")

    def not_found(self) -> None:
        name = self.n("missing/obj")
        _raises(ObjectNotFound, lambda: self.b.load(name), "load of a missing object")
        _raises(ObjectNotFound, lambda: self.b.load(name, 5, 5), "ranged load of a missing object")
        _raises(ObjectNotFound, lambda: self.b.info(name), "info of a missing object")
        _expect(not self.b.exists(name), "exists() of a missing object")

    def invalid_names(self) -> None:
        b = self.b
        for bad in INVALID_NAMES:
            _raises(InvalidObjectName, partial(b.store, bad, b"x"), f"store({bad!r})")
            _raises(InvalidObjectName, partial(b.load, bad), f"load({bad!r})")
            _raises(InvalidObjectName, partial(b.info, bad), f"info({bad!r})")
            _raises(InvalidObjectName, partial(b.delete, bad), f"delete({bad!r})")
        for bad in ("../", "/abs", "a//", ".hidden/"):
            _raises(InvalidObjectName, partial(b.list, bad), f"list({bad!r})")

    def large_object(self) -> None:
        data = os.urandom(self.large_size)
        name = self.put("large/obj", data)
        got = self.b.load(name)
        _expect(
            hashlib.sha256(got).digest() == hashlib.sha256(data).digest(),
            f"large object differs after round trip ({len(got)} of {len(data)} bytes)",
        )
        mid = self.large_size // 2
        _expect(self.b.load(name, mid, 1 << 20) == data[mid : mid + (1 << 20)], "ranged load inside a large object")
        _expect(self.b.info(name).size == self.large_size, "info().size of a large object")

    def empty_object(self) -> None:
        name = self.put("empty/obj", b"")
        _expect(self.b.load(name) == b"", "empty object did not load as b''")
        _expect(self.b.info(name).size == 0, "empty object size")
        _expect([o.name for o in self.b.list(self.n("empty/"))] == [name], "empty object not listed")

    def no_leftovers(self) -> None:
        got = {o.name for o in self.b.list(self.base)}
        _expect(got == self.written, f"unexpected objects under the scratch prefix: {sorted(got - self.written)}")

    ORDER = (
        "round_trip",
        "ranged_load",
        "overwrite_atomic",
        "list_prefix_sorted",
        "info_size",
        "delete",
        "not_found",
        "invalid_names",
        "large_object",
        "empty_object",
        "no_leftovers",
    )


def run_conformance(backend: Backend, *, large_size: int = LARGE_SIZE) -> list[dict[str, Any]]:
    """Run every check against ``backend``; return ``[{check, ok, detail, seconds}]``.

    Never raises for a failing check: a library exception that leaks out of
    the backend is itself reported as a failure, naming its type.  Cleans up
    what it wrote (best effort when the target is unreachable).
    """
    checks = _Checks(backend, f"{SCRATCH_ROOT}/{secrets.token_hex(6)}/", large_size)
    results: list[dict[str, Any]] = []
    unreachable = ""
    try:
        for name in _Checks.ORDER:
            if unreachable:
                results.append({"check": name, "ok": None, "detail": f"skipped: {unreachable}", "seconds": 0.0})
                continue
            start = time.monotonic()
            ok, detail = True, ""
            try:
                getattr(checks, name)()
            except CheckFailed as exc:
                ok, detail = False, str(exc)
            except BackendConnectionError as exc:
                ok, detail = False, str(exc)
                unreachable = str(exc)
            except Exception as exc:  # noqa: BLE001 - report, don't crash: a leaked library error is a finding
                ok, detail = False, f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
            results.append({"check": name, "ok": ok, "detail": detail, "seconds": round(time.monotonic() - start, 4)})
    finally:
        if not unreachable:
            for name in sorted(checks.written):
                try:
                    backend.delete(name)
                except StorageError:
                    pass  # gone already, or cannot delete: the results already say why
    return results


def conformance_ok(results: list[dict[str, Any]]) -> bool:
    """True when every check ran and passed."""
    return all(r["ok"] is True for r in results)
