"""plugins/module_utils/_agent.py against the REAL agent CLI (python -m fleetsafe)
in a temporary configuration: init, full and incremental backups, listing,
verify with read data, a held lock, a damaged pack.  FREQ-FULL, FREQ-INCR,
VER-CHECKSUM, ENC-TEST."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from agent_helpers import REAL_AGENT, agent_cli_available, subprocess_runner
from ansible_collections.fleetsafe.backup.plugins.module_utils._agent import (
    Agent,
    AgentDamaged,
    AgentLocked,
    list_snapshots,
    run_backup,
    run_init,
    run_verify,
)

pytestmark = pytest.mark.skipif(not agent_cli_available(), reason="the agent CLI (python -m fleetsafe) is not importable")


@pytest.fixture
def host(tmp_path):
    """A host in a directory: data, key, config, and an initialised repository."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n" * 1000)
    (data / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    key = tmp_path / "keys" / "repo.key"
    key.parent.mkdir(mode=0o700)
    config = tmp_path / "agent.yml"
    config.write_text(yaml.safe_dump({
        "version": 1, "host": "unit-host", "key_file": str(key),
        "state_dir": str(tmp_path / "state"), "audit_log": str(tmp_path / "log" / "audit.jsonl"),
        "sources": [str(data)], "targets": [{"name": "onsite", "url": str(tmp_path / "repo"), "primary": True}],
    }))
    rc, _out, err = subprocess_runner([*REAL_AGENT, "key", "create", "--file", str(key)], {})
    assert rc == 0, err
    agent = Agent(subprocess_runner, agent_path=REAL_AGENT, config=str(config))
    return {"agent": agent, "root": tmp_path, "data": data, "config": config}


def test_init_is_idempotent(host):
    first = run_init(host["agent"])
    assert first["changed"] is True and first["repository"]
    again = run_init(host["agent"])
    assert again["changed"] is False and again["repository"] == first["repository"]


def test_full_then_incremental_then_listing(host):
    agent = host["agent"]
    run_init(agent)
    full = run_backup(agent, "full")
    assert full["changed"] is True and full["status"] == "success" and full["type"] == "full"
    assert full["files"] == 2 and full["warnings"] == []
    (host["data"] / "a.txt").write_text("changed\n")
    incr = run_backup(agent, "incremental")
    assert incr["type"] == "incremental" and incr["parent"] == full["snapshot_id"]
    info = list_snapshots(agent)
    assert [s["type"] for s in info["snapshots"]] == ["full", "incremental"]
    assert info["last_full"]["id"] == full["snapshot_id"]
    assert info["last_incremental"]["id"] == incr["snapshot_id"]
    assert 0 <= info["last_full_age_seconds"] < 600


def test_missing_source_makes_a_partial_backup_not_a_failure(host):
    agent = host["agent"]
    run_init(agent)
    missing = str(host["root"] / "gone")
    result = run_backup(agent, "full", sources=[str(host["data"]), missing])
    assert result["status"] == "partial" and result["rc"] == 3 and result["changed"] is True
    assert result["snapshot_id"] and result["files"] == 2
    assert result["warnings"][0].startswith(f"partial backup: 1 path(s) or target(s) skipped: {missing}")


def test_verify_reads_all_data(host):
    agent = host["agent"]
    run_init(agent)
    run_backup(agent, "full")
    result = run_verify(agent, 100)
    assert result["status"] == "ok" and result["changed"] is False
    assert result["blobs_checked"] > 0 and result["problems"] == []


def test_held_lock_is_reported_as_locked(host):
    agent = host["agent"]
    run_init(agent)
    state = host["root"] / "state"
    state.mkdir(exist_ok=True, mode=0o700)
    with open(state / "agent.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        with pytest.raises(AgentLocked) as info:
            run_backup(agent, "incremental")
        assert info.value.rc == 4
        result = run_backup(agent, "incremental", fail_on_locked=False)
        assert result["status"] == "locked" and result["changed"] is False


def test_damaged_pack_fails_verify(host):
    agent = host["agent"]
    run_init(agent)
    run_backup(agent, "full")
    packs = [p for p in (host["root"] / "repo").rglob("*") if p.is_file() and "packs" in p.parts]
    assert packs, sorted(str(p) for p in (host["root"] / "repo").rglob("*"))
    victim = max(packs, key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.chmod(0o600)
    victim.write_bytes(bytes(raw))
    with pytest.raises(AgentDamaged) as info:
        run_verify(agent, 100)
    assert info.value.rc == 5 and info.value.result["problems"]
    assert "damaged" in info.value.msg


def test_agent_cli_help_lists_the_commands_modules_use():
    out = subprocess.run([*REAL_AGENT, "--help"], capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[4] / "agent")})
    for command in ("init", "backup", "snapshots", "verify", "key"):
        assert command in out.stdout
