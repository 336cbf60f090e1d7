"""Replication from the onsite repository to the real offsite (SFTP) and cloud (S3) targets.

LOC-OFFSITE / LOC-CLOUD: the replica holds the same objects; a target that is
down makes the run fail with BackendConnectionError after retries (the
caller marks it partial), and the next run copies exactly what was missed.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from fleetsafe.errors import BackendConnectionError
from fleetsafe.replicate import replicate
from fleetsafe.storage.local import LocalBackend
from fleetsafe.storage.url import open_backend
from fleetsafe.storage.wrappers import FaultyBackend, RetryingBackend
from services import make_repo

pytestmark = pytest.mark.services


def _repo(tmp_path: Path) -> tuple[LocalBackend, dict[str, bytes]]:
    src = LocalBackend(tmp_path / "onsite")
    return src, make_repo(src, packs=8)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", ["sftp", "s3"])
def test_replica_matches_and_catches_up(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    target: dict[str, Any] = request.getfixturevalue(f"{kind}_target")
    src, objs = _repo(tmp_path)
    real = open_backend(target, retry=False)
    # An outage starting at the 4th store, longer than the retries.
    faulty = FaultyBackend(real, fail_store_at=range(4, 1000))
    dst = RetryingBackend(faulty, attempts=2, backoff=0.0, sleep=lambda s: None)
    with pytest.raises(BackendConnectionError) as exc:
        replicate(src, dst)
    assert exc.value.details["progress"]["copied"] == 3
    assert real.list("snapshots/") == []
    faulty.fail_store_at.clear()  # the target is back
    result = replicate(src, dst)
    assert result["ok"] and result["copied"] == len(objs) - 3
    assert {o.name: o.size for o in real.list("")} == {n: len(d) for n, d in objs.items()}
    for name, data in objs.items():
        assert real.load(name) == data
    real.close()


def test_unreachable_target_raises_after_retries(sftp_target: dict[str, Any], tmp_path: Path) -> None:
    src, _ = _repo(tmp_path)
    down = dict(sftp_target, url=f"sftp://backup@127.0.0.1:{_free_port()}/upload/x", attempts=2, backoff=0.01)
    with pytest.raises(BackendConnectionError):
        replicate(src, open_backend(down))


def test_replicate_between_remote_targets(sftp_target: dict[str, Any], s3_target: dict[str, Any], tmp_path: Path) -> None:
    # offsite -> cloud works the same (e.g. when the onsite disk is replaced).
    src, objs = _repo(tmp_path)
    with open_backend(sftp_target) as sftp, open_backend(s3_target) as s3:
        replicate(src, sftp)
        result = replicate(sftp, s3)
        assert result["ok"] and result["copied"] == len(objs)
        assert {o.name for o in s3.list("")} == set(objs)
