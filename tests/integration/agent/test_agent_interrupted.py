"""``kill -9`` in the middle of a backup loses nothing (crash safety, FREQ-FULL/FREQ-INCR).

A backup of ~160 MiB is killed once it has uploaded packs; the next backup and
``verify --read-data`` must succeed (the dead run's repository lock is stale,
its local flock died with it), and every snapshot taken before still restores
byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from cli_harness import Agent, restored_root, tree_state

FILES = 32
FILE_SIZE = 5 * 1024 * 1024


def test_kill_9_mid_backup(agent: Agent, tmp_path: Path) -> None:
    (agent.src / "early").mkdir()
    (agent.src / "early" / "a.txt").write_bytes(b"before the crash")
    (agent.src / "early" / "b.bin").write_bytes(os.urandom(300_000))
    first = agent.run("backup", "--type", "full").doc
    state_first = tree_state(agent.src)

    big = agent.src / "big"
    big.mkdir()
    for i in range(FILES):
        (big / f"f{i:03d}").write_bytes(os.urandom(FILE_SIZE))
    packs_before = len(agent.packs())

    proc = agent.popen("backup", "--type", "full")
    deadline = time.monotonic() + 120
    while len(agent.packs()) < packs_before + 3:
        assert proc.poll() is None, f"backup ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "no packs were written"
        time.sleep(0.05)
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(agent.packs()) > packs_before  # it really was mid-run, with data uploaded
    assert list((agent.repo / "locks").iterdir())  # and left its repository lock behind

    # The next run is not blocked by the dead run's locks, and completes.
    second = agent.run("backup").doc
    assert second["status"] == "success" and second["parent"] == first["snapshot_id"]
    assert second["files"] == FILES + 2
    assert not list((agent.repo / "locks").iterdir())
    v = agent.run("verify", "--read-data").doc
    assert v["status"] == "ok" and v["problems"] == []

    # Every snapshot restores byte-identical: the one before the crash and the one after.
    out1 = tmp_path / "r1"
    agent.run("restore", first["snapshot_id"], "--target-dir", str(out1))
    assert tree_state(restored_root(out1, agent.src)) == state_first
    out2 = tmp_path / "r2"
    agent.run("restore", second["snapshot_id"], "--target-dir", str(out2))
    assert tree_state(restored_root(out2, agent.src)) == tree_state(agent.src)


def test_sigterm_releases_locks_and_reports(agent: Agent) -> None:
    """systemd stops a unit with SIGTERM: the run ends with an error document and frees its locks."""
    for i in range(20):  # ~100 MiB: signalled after the first pack, far from the end
        (agent.src / f"f{i:02d}").write_bytes(os.urandom(FILE_SIZE))
    packs_before = len(agent.packs())
    proc = agent.popen("backup", "--type", "full")
    deadline = time.monotonic() + 120
    while len(agent.packs()) < packs_before + 1:
        assert proc.poll() is None, f"backup ended before SIGTERM: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, _err = proc.communicate(timeout=60)
    doc = json.loads(out)
    assert proc.returncode == 1 and doc["error"] == "interrupted" and "SIGTERM" in doc["message"]
    assert not list((agent.repo / "locks").iterdir())  # released on the way out, not left stale
    ev = agent.events()[-1]
    assert ev["action"] == "backup" and ev["status"] == "failure" and ev["details"]["error"] == "interrupted"
    assert agent.run("status").doc["locked"] is False  # nothing left behind for the next run
