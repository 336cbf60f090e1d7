"""Partial backups: an unreadable file or directory is named, the rest is saved, exit 3 (AUD-LOG).

Permission checks do not apply to root, so when the suite runs as root the CLI
is started as ``nobody`` through ``setpriv`` on a tree that user owns; the
test asserts the agent really ran unprivileged (the audit actor's uid), so the
permission-denied path is exercised either way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import Agent, make_agent, restored_root

NOBODY = 65534


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, uid, gid)
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), uid, gid, follow_symlinks=False)


@pytest.fixture
def unprivileged_agent() -> Iterator[Agent]:
    # Not under pytest's tmp_path: that is 0700 root, which nobody cannot traverse.
    base = Path(tempfile.mkdtemp(prefix="fleetsafe-partial-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        agent = make_agent(base / "host")
        src = agent.src
        (src / "ok.txt").write_bytes(b"readable")
        (src / "secret").write_bytes(b"nobody may read this")
        (src / "locked").mkdir()
        (src / "locked" / "inner").write_bytes(b"behind a 000 directory")
        (src / "z-after").write_bytes(b"after the unreadable ones")
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot drop privileges")
            _chown_tree(base, NOBODY, NOBODY)
            agent.prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        os.chmod(src / "secret", 0o000)
        os.chmod(src / "locked", 0o000)
        yield agent
    finally:
        for p in (base / "host" / "src" / "locked",):
            if p.exists():
                os.chmod(p, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_unreadable_paths_make_a_partial_snapshot(unprivileged_agent: Agent, tmp_path: Path) -> None:
    agent = unprivileged_agent
    r = agent.run("backup", "--type", "full", expect=3)
    d = r.doc
    assert d["status"] == "partial" and d["exit_code"] == 3
    errs = {e["path"]: e["error"] for e in d["errors"]}
    assert errs == {str(agent.src / "secret"): "Permission denied", str(agent.src / "locked"): "Permission denied"}
    assert d["snapshot_id"]  # the snapshot exists; nothing else was lost
    assert d["files"] == 2  # ok.txt and z-after

    snaps = agent.run("snapshots").doc["snapshots"]
    assert [(s["id"], s["status"]) for s in snaps] == [(d["snapshot_id"], "partial")]

    event = [e for e in agent.events() if e["action"] == "backup"][-1]
    assert event["status"] == "partial"
    assert {e["path"] for e in event["errors"]} == set(errs)
    if agent.prefix:
        assert event["actor"]["uid"] == NOBODY  # the denial really came from the kernel, not a mock

    # The readable rest restores completely; the unreadable directory exists (empty).
    out = Path(tempfile.mkdtemp(prefix="fleetsafe-partial-out-", dir=agent.base))
    if agent.prefix:
        os.chown(out, NOBODY, NOBODY)
    agent.run("restore", d["snapshot_id"], "--target-dir", str(out))
    root = restored_root(out, agent.src)
    assert (root / "ok.txt").read_bytes() == b"readable"
    assert (root / "z-after").read_bytes() == b"after the unreadable ones"
    assert not (root / "secret").exists()
    os.chmod(root / "locked", 0o755)
    assert list((root / "locked").iterdir()) == []

    # A later incremental is partial again, and still complete for what is readable.
    r2 = agent.run("backup", expect=3)
    assert r2.doc["parent"] == d["snapshot_id"] and r2.doc["files_reused"] == 2


def test_missing_source_is_partial(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "host", sources=[str(tmp_path / "host" / "src"), str(tmp_path / "gone")])
    (agent.src / "f").write_bytes(b"x")
    r = agent.run("backup", "--type", "full", expect=3)
    assert r.doc["errors"] == [{"path": str(tmp_path / "gone"), "error": "No such file or directory"}]
