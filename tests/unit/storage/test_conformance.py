"""The conformance suite (fleetsafe.storage.conformance) against every real backend and the wrappers."""

from __future__ import annotations

from typing import Any

import pytest

from fleetsafe.storage.base import Backend
from fleetsafe.storage.conformance import conformance_ok, run_conformance
from fleetsafe.storage.local import LocalBackend
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


@pytest.mark.services
def test_sftp(sftp_backend: Backend) -> None:
    _assert_conforms(sftp_backend)


@pytest.mark.services
def test_s3(s3_backend: Backend) -> None:
    _assert_conforms(s3_backend)
