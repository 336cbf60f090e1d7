"""The conformance suite (fleetsafe.storage.conformance) against every real backend and the wrappers."""

from __future__ import annotations

from typing import Any

import pytest
from fleetsafe.storage.base import Backend
from fleetsafe.storage.conformance import conformance_ok, run_conformance
from fleetsafe.storage.local import LocalBackend
from fleetsafe.storage.url import open_backend
from fleetsafe.storage.wrappers import FaultyBackend, RetryingBackend


def _assert_conforms(backend: Backend) -> None:
    results = run_conformance(backend)
    failed = [r for r in results if r["ok"] is not True]
    assert not failed, "\n".join(f"{r['check']}: {r['detail']}" for r in failed)
    assert conformance_ok(results)
    # The suite cleaned up after itself.
    assert backend.list("fleetsafe-check/") == []


def test_local(tmp_path: Any) -> None:
    _assert_conforms(LocalBackend(tmp_path / "repo"))


def test_retrying_over_a_flaky_link(tmp_path: Any) -> None:
    # Every third call fails with a connection error; retries hide all of it.
    # Not deletes: a retried delete cannot tell "deleted by the failed try"
    # from "was never there" and counts both as done (see test_storage_wrappers).
    faulty = FaultyBackend(LocalBackend(tmp_path / "repo"), flaky_every=3, flaky_ops={"load", "store", "info", "list"})
    _assert_conforms(RetryingBackend(faulty, attempts=3, backoff=0.0, sleep=lambda s: None))
    assert faulty.reconnects > 10


def test_faulty_without_faults_is_transparent(tmp_path: Any) -> None:
    _assert_conforms(FaultyBackend(LocalBackend(tmp_path / "repo")))


def test_failures_are_reported_not_raised(tmp_path: Any) -> None:
    # A backend that corrupts loads must fail the data checks, by name.
    results = run_conformance(FaultyBackend(LocalBackend(tmp_path / "repo"), flip_byte_on_load=3))
    failed = {r["check"] for r in results if r["ok"] is False}
    assert {"round_trip", "ranged_load", "large_object"} <= failed
    assert not conformance_ok(results)


def test_unreachable_target_skips_the_rest(tmp_path: Any) -> None:
    results = run_conformance(FaultyBackend(LocalBackend(tmp_path / "repo"), down=True))
    assert results[0]["ok"] is False and "unreachable" in results[0]["detail"]
    assert all(r["ok"] is None for r in results[1:])


@pytest.mark.services
def test_sftp(sftp_backend: Backend) -> None:
    _assert_conforms(sftp_backend)


@pytest.mark.services
def test_s3(s3_backend: Backend) -> None:
    _assert_conforms(s3_backend)


@pytest.mark.services
def test_s3_through_open_backend(s3_target: dict[str, Any]) -> None:
    # What `fleetsafe target check` runs: the agent.yml entry, retry wrapper included.
    with open_backend(s3_target) as backend:
        _assert_conforms(backend)


@pytest.mark.services
def test_sftp_through_open_backend(sftp_target: dict[str, Any]) -> None:
    with open_backend(sftp_target) as backend:
        _assert_conforms(backend)


def _readers_see_whole_objects(writer: Backend, reader: Backend) -> None:
    """Overwrite while another connection reads: every read is all-A or all-B."""
    import threading

    a, b = b"A" * 300_000, b"B" * 200_000
    writer.store("ow/x", a)
    stop = threading.Event()
    seen: list[bytes] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(reader.load("ow/x"))

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(20):
            writer.store("ow/x", b if i % 2 else a)
    finally:
        stop.set()
        t.join()
    assert seen and all(x in (a, b) for x in seen)


def test_local_overwrite_is_atomic_for_concurrent_readers(tmp_path: Any) -> None:
    _readers_see_whole_objects(LocalBackend(tmp_path / "r"), LocalBackend(tmp_path / "r"))


@pytest.mark.services
def test_sftp_overwrite_is_atomic_for_concurrent_readers(sftp_target: dict[str, Any]) -> None:
    # Two connections: a backend object is not thread-safe.
    with open_backend(sftp_target) as w, open_backend(sftp_target) as r:
        _readers_see_whole_objects(w, r)


@pytest.mark.services
def test_s3_overwrite_is_atomic_for_concurrent_readers(s3_target: dict[str, Any]) -> None:
    with open_backend(s3_target) as w, open_backend(s3_target) as r:
        _readers_see_whole_objects(w, r)


def test_long_names_store(tmp_path: Any) -> None:
    backend = LocalBackend(tmp_path / "r")
    backend.store("a" * 255, b"x")  # the temp name must not exceed NAME_MAX
    assert backend.load("a" * 255) == b"x"
