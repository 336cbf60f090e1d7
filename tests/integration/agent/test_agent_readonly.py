"""Disaster recovery from a write-protected repository: read-only commands run without a lock (root: bind mounts)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import Agent

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a read-only bind mount")


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


@needs_root
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


@needs_root
def test_restore_into_read_only_filesystem_aborts(agent: Agent, tmp_path: Path) -> None:
    (agent.src / "f").write_bytes(b"x")
    sid = agent.run("backup").doc["snapshot_id"]
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        r = agent.run("restore", sid, "--target-dir", str(ro / "new"), expect=1)
    assert r.doc["error"] == "restore_aborted" and "Read-only file system" in r.doc["message"]


def test_include_matching_nothing_is_not_found(agent: Agent, tmp_path: Path) -> None:
    (agent.src / "f").write_bytes(b"x")
    sid = agent.run("backup").doc["snapshot_id"]
    r = agent.run("restore", sid, "--target-dir", str(tmp_path / "o"), "--include", "/no/such/path", expect=9)
    assert r.doc["error"] == "path_not_found" and "/no/such/path matches nothing" in r.doc["message"]


def test_sample_text_has_a_verdict_and_no_deleted_path(agent: Agent) -> None:
    for i in range(4):
        (agent.src / f"f{i}").write_bytes(os.urandom(100))
    agent.run("backup", "--type", "full")
    r = agent.run("restore", "latest", "--sample", "3", json_out=False)
    assert "OK: 3 file(s) sampled, 3 compared with the unchanged live file, 0 differ" in r.stdout
    assert "staging copy removed" in r.stdout and str(agent.state) not in r.stdout
    d = agent.run("restore", "latest", "--sample", "3").doc
    assert d["sample_verdict"].startswith("OK: 3 file(s) sampled, 3 compared")
