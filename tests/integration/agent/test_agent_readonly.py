"""Disaster recovery from a write-protected repository: read-only commands run without a lock (root: bind mounts)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import Agent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a read-only bind mount")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` bind-mounted over itself read-only for the duration."""
    if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, check=False).returncode:
        pytest.skip("mount --bind not permitted here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)


def test_read_only_repository(agent: Agent, tmp_path: Path) -> None:
    (agent.src / "f").write_bytes(b"precious")
    sid = agent.run("backup", "--type", "full").doc["snapshot_id"]
    out = tmp_path / "out"
    with read_only(agent.repo):
        with pytest.raises(OSError):
            (agent.repo / "probe").write_bytes(b"")
        v = agent.run("verify", "--read-data")
        assert v.doc["status"] == "ok"
        assert any("without a lock" in w for w in v.doc["warnings"])
        assert "without a lock" in v.stderr
        assert agent.run("snapshots").doc["snapshots"][0]["id"] == sid
        agent.run("ls", sid)
        r = agent.run("restore", sid, "--target-dir", str(out))
        assert any("without a lock" in w for w in r.doc["warnings"])
        assert (out / str(agent.src).lstrip("/") / "f").read_bytes() == b"precious"
        # Writers still fail on a read-only target.
        agent.run("backup", expect=7)
        agent.run("repair", expect=7)
    assert not any((agent.repo / "locks").glob("*"))


def test_no_lock_option(agent: Agent, tmp_path: Path) -> None:
    (agent.src / "f").write_bytes(b"x")
    sid = agent.run("backup").doc["snapshot_id"]
    v = agent.run("verify", "--no-lock")
    assert any("--no-lock" in w for w in v.doc["warnings"])
    r = agent.run("restore", sid, "--no-lock", "--target-dir", str(tmp_path / "o"))
    assert any("--no-lock" in w for w in r.doc["warnings"])
    agent.run("snapshots", "--no-lock")
    agent.run("ls", "--no-lock", sid)
