"""plugins/module_utils/_agent.py: how agent documents and exit codes become module results.

The exit-code mapping is tested with small fake agents (a real repository
cannot be made to report "locked" or "partial" on demand); everything a real
repository can do is tested against the real agent CLI in test_agent_real.py.
"""

from __future__ import annotations

import datetime
import json

import pytest
from agent_helpers import subprocess_runner, write_fake_agent
from ansible_collections.fleetsafe.backup.plugins.module_utils import _agent
from ansible_collections.fleetsafe.backup.plugins.module_utils._agent import (
    Agent,
    AgentDamaged,
    AgentError,
    AgentLocked,
    list_snapshots,
    parse_time,
    run_backup,
    run_init,
    run_verify,
)

M5 = {
    "schema_version": 1, "action": "backup", "host": "web1", "repository": "3f", "target": "onsite",
    "snapshot_id": "a1b2c3", "type": "incremental", "parent": "9c", "start": "2026-12-03T17:00:00Z",
    "end": "2026-12-03T17:00:04Z", "duration_seconds": 4.1, "status": "success", "exit_code": 0,
    "files": 3, "dirs": 1, "bytes_read": 10, "bytes_added": 4, "bytes_stored": 2, "packs_added": 1,
    "data_sets": ["/etc"], "errors": [], "warnings": [],
}


def fake(tmp_path, rc, doc):
    record = tmp_path / "calls.jsonl"
    exe = write_fake_agent(tmp_path / "fleetsafe", rc, doc, record)
    return Agent(subprocess_runner, agent_path=str(exe), config="/etc/fleetsafe/agent.yml"), record


def calls(record):
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_backup_success_returns_the_m5_document(tmp_path):
    agent, record = fake(tmp_path, 0, M5)
    result = run_backup(agent, "incremental", sources=["/etc", "/srv"])
    assert result["changed"] is True
    assert result["snapshot_id"] == "a1b2c3" and result["status"] == "success"
    assert result["warnings"] == [] and "schema_version" not in result
    (call,) = calls(record)
    assert call["argv"] == ["--json", "--config", "/etc/fleetsafe/agent.yml", "backup", "--type",
                            "incremental", "--source", "/etc", "--source", "/srv"]
    # AC-LOG: runs from Ansible are recorded as actor.via=ansible.
    assert call["trigger"] == "ansible"


def test_backup_target_option_is_passed(tmp_path):
    agent, record = fake(tmp_path, 0, M5)
    agent.target = "offsite"
    run_backup(agent, "full")
    assert calls(record)[0]["argv"][:5] == ["--json", "--config", "/etc/fleetsafe/agent.yml", "--target", "offsite"]


def test_backup_partial_is_a_warning_not_a_failure(tmp_path):
    doc = dict(M5, status="partial", exit_code=3,
               errors=[{"path": "/etc/shadow-", "error": "Permission denied"}], warnings=["slow disk"])
    agent, _ = fake(tmp_path, 3, doc)
    result = run_backup(agent, "full")
    assert result["status"] == "partial" and result["changed"] is True and result["rc"] == 3
    assert result["warnings"][0].startswith("partial backup: 1 path(s) or target(s) skipped: /etc/shadow-: Permission denied")
    assert "slow disk" in result["warnings"]


def test_backup_locked_fails_unless_told_not_to(tmp_path):
    doc = {"schema_version": 1, "error": "locked", "message": "repository locked by pid 42", "exit_code": 4}
    agent, _ = fake(tmp_path, 4, doc)
    with pytest.raises(AgentLocked) as info:
        run_backup(agent, "incremental")
    assert "repository locked by pid 42" in info.value.msg
    assert info.value.result["rc"] == 4 and info.value.result["error"] == "locked"
    result = run_backup(agent, "incremental", fail_on_locked=False)
    assert result["changed"] is False and result["status"] == "locked"
    assert "no snapshot was taken" in result["warnings"][0]


def test_backup_failure_raises_with_the_agent_message(tmp_path):
    doc = {"schema_version": 1, "error": "target", "message": "onsite: no space left", "exit_code": 7}
    agent, _ = fake(tmp_path, 7, doc)
    with pytest.raises(AgentError) as info:
        run_backup(agent, "full")
    assert info.value.msg == "fleetsafe backup: onsite: no space left"
    assert info.value.rc == 7 and info.value.kind == "target"


def test_backup_check_mode_does_not_call_the_agent(tmp_path):
    agent, record = fake(tmp_path, 0, M5)
    result = run_backup(agent, "full", check_mode=True)
    assert result["changed"] is True and result["snapshot_id"] is None and result["status"] == "check_mode"
    assert calls(record) == []


def test_many_errors_are_capped(tmp_path):
    errors = [{"path": f"/srv/f{i}", "error": "vanished"} for i in range(120)]
    agent, _ = fake(tmp_path, 3, dict(M5, status="partial", errors=errors))
    result = run_backup(agent, "incremental")
    assert len(result["errors"]) == _agent.MAX_LISTED_PROBLEMS and result["errors_total"] == 120
    assert "(and 110 more)" in result["warnings"][0]


@pytest.mark.parametrize("out, needle", [
    ("Traceback (most recent call last):", "printed no JSON document"),
    ("[1, 2]", "instead of a JSON object"),
    ('{"schema_version": 2}', "schema_version 2"),
])
def test_protocol_errors_are_named(tmp_path, out, needle):
    agent, _ = fake(tmp_path, 1, out)
    with pytest.raises(AgentError) as info:
        run_backup(agent, "full")
    assert needle in info.value.msg and info.value.kind == "protocol"


def test_missing_agent_says_to_run_the_role(tmp_path):
    agent = Agent(subprocess_runner, agent_path=str(tmp_path / "nope"))
    with pytest.raises(AgentError) as info:
        run_verify(agent)
    assert "fleetsafe.backup.agent role" in info.value.msg


def test_init_changed_only_when_created(tmp_path):
    agent, _ = fake(tmp_path, 0, {"schema_version": 1, "repository": "3f", "created": False})
    assert run_init(agent)["changed"] is False
    agent, _ = fake(tmp_path, 0, {"schema_version": 1, "repository": "3f", "created": True})
    assert run_init(agent)["changed"] is True


def test_init_with_an_added_recovery_slot_is_changed_and_warns(tmp_path):
    agent, _ = fake(tmp_path, 0, {"schema_version": 1, "repository": "3f", "created": False,
                                  "slots_added": ["SHA256:newrecovery"]})
    result = run_init(agent)
    assert result["changed"] is True
    (warning,) = result["warnings"]
    assert "SHA256:newrecovery" in warning and "older recovery slot" in warning
    assert "rotation" in warning
    agent, _ = fake(tmp_path, 0, {"schema_version": 1, "repository": "3f", "created": False,
                                  "slots_added": []})
    result = run_init(agent)
    assert result["changed"] is False and result["warnings"] == []


def test_snapshot_info_reports_the_newest_of_each_type_and_ages(tmp_path):
    snaps = [
        {"id": "1", "short_id": "1", "type": "full", "start": "2026-12-01T02:00:00Z"},
        {"id": "2", "short_id": "2", "type": "incremental", "start": "2026-12-01T08:00:00.123456789Z"},
        {"id": "3", "short_id": "3", "type": "full", "start": "2026-12-02T02:00:00Z"},
        {"id": "4", "short_id": "4", "type": "incremental", "start": "2026-12-02T09:00:00+00:00"},
    ]
    agent, record = fake(tmp_path, 0, {"schema_version": 1, "snapshots": snaps})
    now = datetime.datetime(2026, 12, 2, 10, 0, tzinfo=datetime.UTC)
    result = list_snapshots(agent, last=1, now=now)
    assert result["changed"] is False and result["count"] == 4
    assert [s["id"] for s in result["snapshots"]] == ["4"]
    assert result["last_full"]["id"] == "3" and result["last_incremental"]["id"] == "4"
    assert result["last_full_age_seconds"] == 8 * 3600
    assert result["last_incremental_age_seconds"] == 3600
    assert calls(record)[0]["argv"][-1] == "snapshots"


@pytest.mark.parametrize("scope, expected_full", [(False, "1"), (True, "3"), (None, "3")])
def test_snapshot_info_skips_subset_backups(tmp_path, scope, expected_full):
    # policy_scope false = a backup of a subset of the sources: not the last full / incremental.
    newest_full = {"id": "3", "short_id": "3", "type": "full", "start": "2026-12-02T02:00:00Z"}
    newest_incr = {"id": "4", "short_id": "4", "type": "incremental", "start": "2026-12-02T09:00:00Z"}
    if scope is not None:
        newest_full["policy_scope"] = scope
        newest_incr["policy_scope"] = scope
    snaps = [
        {"id": "1", "short_id": "1", "type": "full", "start": "2026-12-01T02:00:00Z", "policy_scope": True},
        {"id": "2", "short_id": "2", "type": "incremental", "start": "2026-12-01T08:00:00Z"},
        newest_full,
        newest_incr,
    ]
    agent, _ = fake(tmp_path, 0, {"schema_version": 1, "snapshots": snaps})
    now = datetime.datetime(2026, 12, 2, 10, 0, tzinfo=datetime.UTC)
    result = list_snapshots(agent, now=now)
    assert result["count"] == 4 and len(result["snapshots"]) == 4
    assert result["last_full"]["id"] == expected_full
    assert result["last_incremental"]["id"] == ("2" if scope is False else "4")
    assert result["last_full_age_seconds"] == (32 if scope is False else 8) * 3600


def test_snapshot_info_on_an_empty_repository(tmp_path):
    agent, _ = fake(tmp_path, 0, {"schema_version": 1, "snapshots": []})
    result = list_snapshots(agent)
    assert result["last_full"] is None and result["last_full_age_seconds"] is None


@pytest.mark.parametrize("pct, args", [(0, ["verify"]), (5, ["verify", "--read-data-subset", "5"]),
                                       (2.5, ["verify", "--read-data-subset", "2.5"]),
                                       (100, ["verify", "--read-data"])])
def test_verify_read_data_flags(tmp_path, pct, args):
    doc = {"schema_version": 1, "status": "ok", "packs_checked": 1, "blobs_checked": 2, "bytes_read": 3, "problems": []}
    agent, record = fake(tmp_path, 0, doc)
    result = run_verify(agent, pct)
    assert result["changed"] is False and result["status"] == "ok"
    assert calls(record)[0]["argv"][3:] == args


def test_verify_damaged_fails_listing_problems(tmp_path):
    doc = {"schema_version": 1, "status": "damaged", "packs_checked": 2, "blobs_checked": 0, "bytes_read": 0,
           "problems": [{"object": "data/ab/abcd", "problem": "sha256 mismatch"}]}
    agent, _ = fake(tmp_path, 5, doc)
    with pytest.raises(AgentDamaged) as info:
        run_verify(agent, 10)
    assert "data/ab/abcd: sha256 mismatch" in info.value.msg
    assert info.value.result["problems"] == doc["problems"] and info.value.result["rc"] == 5


def test_verify_rejects_a_bad_percentage(tmp_path):
    agent, record = fake(tmp_path, 0, {})
    with pytest.raises(AgentError):
        run_verify(agent, 101)
    assert calls(record) == []


def test_parse_time_variants():
    utc = datetime.UTC
    assert parse_time("2026-12-03T17:00:00Z") == datetime.datetime(2026, 12, 3, 17, 0, tzinfo=utc)
    assert parse_time("2026-12-03T17:00:00.5Z").microsecond == 500000
    assert parse_time("2026-12-03T17:00:00").tzinfo is not None
