"""The three thin modules end to end in-process: argument spec, check mode,
warnings, and fail_json, with the module's stdout parsed as Ansible would.
The agent is a small stand-in executable (see test_agent_real.py for the real one)."""

from __future__ import annotations

import json

import pytest
from agent_helpers import write_fake_agent
from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.fleetsafe.backup.plugins.modules import (
    backup,
    snapshot_info,
    verify,
)

M5 = {"schema_version": 1, "action": "backup", "snapshot_id": "a1", "type": "full", "status": "partial",
      "exit_code": 3, "errors": [{"path": "/srv/x", "error": "vanished"}], "warnings": ["slow"]}


def _text(warning):
    """ansible-core 2.19 may wrap a warning as {"event": {"msg": ...}} or {"msg": ...}."""
    while isinstance(warning, dict):
        warning = warning.get("event", warning.get("msg"))
    return warning


@pytest.fixture(autouse=True)
def _as_on_a_host(monkeypatch):
    """Once any controller code is imported in the test process (the action
    plugin tests do), ansible-core sends module warnings to the display instead
    of the result; a module on a host returns them."""
    monkeypatch.setattr(_internal, "is_controller", False)


def run_module(module, args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        module.main()
    out = json.loads(capsys.readouterr().out)
    return info.value.code, out


def test_backup_partial_warns_and_returns_the_document(tmp_path, capsys):
    exe = write_fake_agent(tmp_path / "fleetsafe", 3, M5)
    code, out = run_module(backup, {"type": "full", "agent_path": str(exe), "config": "/x/agent.yml"}, capsys)
    assert code == 0 and not out.get("failed")
    assert out["changed"] is True and out["status"] == "partial" and out["snapshot_id"] == "a1"
    warnings = [_text(w) for w in out["warnings"]]
    assert any("partial backup: 1 path(s)" in w for w in warnings) and "slow" in warnings


def test_backup_check_mode_changes_without_calling_the_agent(tmp_path, capsys):
    record = tmp_path / "calls"
    exe = write_fake_agent(tmp_path / "fleetsafe", 1, "nothing", record)
    code, out = run_module(backup, {"agent_path": str(exe), "_ansible_check_mode": True}, capsys)
    assert code == 0 and out["changed"] is True and out["snapshot_id"] is None
    assert not record.exists()


def test_backup_locked_fails(tmp_path, capsys):
    exe = write_fake_agent(tmp_path / "fleetsafe", 4, {"schema_version": 1, "error": "locked",
                                                     "message": "held by pid 7", "exit_code": 4})
    code, out = run_module(backup, {"agent_path": str(exe)}, capsys)
    assert code == 1 and out["failed"] is True and "held by pid 7" in out["msg"] and out["rc"] == 4


def test_backup_rejects_an_unknown_type(tmp_path, capsys):
    code, out = run_module(backup, {"type": "differential"}, capsys)
    assert code == 1 and "value of type must be one of" in out["msg"]


def test_snapshot_info_in_check_mode(tmp_path, capsys):
    exe = write_fake_agent(tmp_path / "fleetsafe", 0, {"schema_version": 1, "snapshots": [
        {"id": "1", "type": "full", "start": "2026-12-03T02:00:00Z"}]})
    code, out = run_module(snapshot_info, {"agent_path": str(exe), "_ansible_check_mode": True}, capsys)
    assert code == 0 and out["changed"] is False and out["count"] == 1 and out["last_full"]["id"] == "1"


def test_verify_damaged_fails_with_problems(tmp_path, capsys):
    exe = write_fake_agent(tmp_path / "fleetsafe", 5, {"schema_version": 1, "status": "damaged",
                                                     "problems": [{"object": "packs/ab/abc", "problem": "bad"}]})
    code, out = run_module(verify, {"agent_path": str(exe), "read_data_percent": 5}, capsys)
    assert code == 1 and out["failed"] is True and out["problems"][0]["object"] == "packs/ab/abc"
    assert "packs/ab/abc: bad" in out["msg"]
