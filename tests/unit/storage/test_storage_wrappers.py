"""RetryingBackend and FaultyBackend over a real LocalBackend (faults injected, data path real)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fleetsafe.errors import (
    BackendConnectionError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
    StorageFull,
    UntrustedTarget,
)
from fleetsafe.storage.local import LocalBackend
from fleetsafe.storage.wrappers import FaultyBackend, RetryingBackend


@pytest.fixture
def local(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "repo")


def _retrying(inner: FaultyBackend, attempts: int = 4) -> tuple[RetryingBackend, list[float]]:
    sleeps: list[float] = []
    return RetryingBackend(inner, attempts=attempts, backoff=0.5, max_backoff=2.0, jitter=False, sleep=sleeps.append), sleeps


def test_short_outage_is_bridged_with_backoff(local: LocalBackend) -> None:
    faulty = FaultyBackend(local, connection_errors=3)
    retrying, sleeps = _retrying(faulty)
    retrying.store("a", b"1")
    assert local.load("a") == b"1"
    assert sleeps == [0.5, 1.0, 2.0]  # exponential, capped at max_backoff
    assert faulty.reconnects == 3


def test_gives_up_after_attempts(local: LocalBackend) -> None:
    faulty = FaultyBackend(local, down=True)
    retrying, sleeps = _retrying(faulty, attempts=3)
    with pytest.raises(BackendConnectionError):
        retrying.load("a")
    assert faulty.calls["load"] == 3 and len(sleeps) == 2


@pytest.mark.parametrize("error", [ObjectNotFound, StorageFull, StorageError, UntrustedTarget, IntegrityError])
def test_permanent_errors_are_not_retried(local: LocalBackend, error: type[Exception]) -> None:
    class Failing(LocalBackend):
        def info(self, name: str):  # type: ignore[no-untyped-def]
            raise error("injected", name=name, backend="x")

    retrying, sleeps = _retrying(FaultyBackend(Failing(local.root)))
    with pytest.raises(error):
        retrying.info("a")
    assert sleeps == []


def test_lost_delete_reply_counts_as_done(local: LocalBackend) -> None:
    class LostReply(FaultyBackend):
        def delete(self, name: str) -> None:
            self.inner.delete(name)
            if self.calls["delete"] == 0:
                self.calls["delete"] += 1
                raise BackendConnectionError("reply lost", backend="x")

    local.store("a", b"1")
    retrying, _ = _retrying(LostReply(local))
    retrying.delete("a")  # first try deleted it, the retry sees ObjectNotFound
    assert not local.exists("a")
    with pytest.raises(ObjectNotFound):
        retrying.delete("a")  # a first-try ObjectNotFound is still an error


def test_jitter_stays_within_half_to_full_delay() -> None:
    r = RetryingBackend(LocalBackend.__new__(LocalBackend), backoff=1.0, max_backoff=4.0)
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)):
        for _ in range(20):
            assert full / 2 <= r.delay(attempt) <= full


def test_on_retry_hook(local: LocalBackend) -> None:
    seen: list[tuple[str, int]] = []
    r = RetryingBackend(FaultyBackend(local, connection_errors=1), sleep=lambda s: None,
                        on_retry=lambda op, n, exc, d: seen.append((op, n)))  # fmt: skip
    r.list("")
    assert seen == [("list", 1)]


def test_attempts_must_be_positive(local: LocalBackend) -> None:
    with pytest.raises(ValueError):
        RetryingBackend(local, attempts=0)


def test_faulty_fail_nth_store(local: LocalBackend) -> None:
    faulty = FaultyBackend(local, fail_store_at=[2], store_error=StorageFull)
    faulty.store("a", b"1")
    with pytest.raises(StorageFull):
        faulty.store("b", b"2")
    faulty.store("c", b"3")
    assert [o.name for o in local.list()] == ["a", "c"]  # the failed store left nothing


def test_faulty_disk_full(local: LocalBackend) -> None:
    faulty = FaultyBackend(local, full_after_bytes=10)
    faulty.store("a", b"12345")
    with pytest.raises(StorageFull):
        faulty.store("b", b"123456")
    assert not local.exists("b")


def test_faulty_corrupts_loads_by_prefix(local: LocalBackend) -> None:
    local.store("packs/p", b"abcdef")
    local.store("config", b"abcdef")
    faulty = FaultyBackend(local, truncate_load=2, flip_byte_on_load=0, corrupt_prefix="packs/")
    assert faulty.load("packs/p") == bytes([ord("a") ^ 0xFF]) + b"bcd"
    assert faulty.load("config") == b"abcdef"


def test_faulty_down_and_up(local: LocalBackend) -> None:
    faulty = FaultyBackend(local, down=True)
    with pytest.raises(BackendConnectionError):
        faulty.list("")
    faulty.down = False
    assert faulty.list("") == []
    assert faulty.calls["list"] == 2
