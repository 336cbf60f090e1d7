"""audit_collect / fleet_report action plugins with the host side run in-process."""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleActionFail
from ansible_collections.fleetsafe.backup.plugins.action.audit_collect import (
    ActionModule as CollectAction,
)
from ansible_collections.fleetsafe.backup.plugins.action.fleet_report import (
    ActionModule as ReportAction,
)
from ansible_collections.fleetsafe.backup.plugins.module_utils._audit_read import (
    read_batch,
    read_head,
)
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._store import (
    Store,
    resolve_controller_path,
)
from ansible_collections.fleetsafe.backup.tests.unit.plugins.plugin_utils.audit_chain import (
    Chain,
)

T0 = datetime(2026, 12, 3, 8, 0, 5, tzinfo=UTC)


def make_action(cls: type, args: dict[str, Any], check_mode: bool = False) -> Any:
    task = MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = check_mode
    task.action = "fleetsafe.backup.test"
    connection = MagicMock()
    connection._shell.tmpdir = None
    action = cls(task, connection, MagicMock(), MagicMock(), MagicMock(), None)
    action._remove_tmp_path = lambda path: None
    action.calls = []

    def execute_module(module_name: str, module_args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        # What the module's main() does on the host, without a connection.
        action.calls.append(dict(module_args))
        head = read_head(module_args["config"], module_args["path"]) if module_args["scan"] else None
        batch = read_batch(module_args["path"], module_args["since"], module_args["offset"], module_args["max_events"], module_args["max_bytes"], module_args["scan"])
        return {"changed": False, "head": head, **batch}

    action._execute_module = execute_module
    return action


@pytest.fixture
def site(tmp_path):
    chain = Chain("web1")
    for i in range(23):
        chain.add(at=T0 + timedelta(hours=i), type="full" if i == 0 else "incremental")
    log = tmp_path / "audit.jsonl"
    chain.write(str(log))
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "hosts.yml").write_text("all: {}\n")
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "agent.yml").write_text(f"version: 1\nstate_dir: {state}  # agent state\n")
    task_vars = {"inventory_hostname": "web1", "ansible_inventory_sources": [str(inv / "hosts.yml")], "playbook_dir": str(tmp_path / "pb"), "awx_job_id": 77}
    return {"chain": chain, "log": log, "vars": task_vars, "db": inv / "state" / "fleetsafe.db", "tmp": tmp_path, "head": state / "audit.head"}


def collect(site: dict, check_mode: bool = False, **extra: Any) -> tuple[dict[str, Any], Any]:
    args = {"store": "state/fleetsafe.db", "path": str(site["log"]), "config": str(site["tmp"] / "agent.yml"), "max_events": 10, **extra}
    action = make_action(CollectAction, args, check_mode)
    return action.run(task_vars=site["vars"]), action


def test_batches_cursor_and_metadata(site):
    result, action = collect(site)
    assert result["changed"] and result["chain_ok"] and result["events_added"] == 23 and result["last_seq"] == 23
    assert result["batches"] == 3 and [c["since"] for c in action.calls] == [0, 10, 20]
    assert [c["scan"] for c in action.calls] == [True, False, False]  # the whole file is read once
    assert result["store"] == str(site["db"])
    with Store(str(site["db"])) as store:
        assert store.cursor("web1").seq == 23
        last = store.last_collection("web1")
        assert last["awx_job_id"] == "77" and last["events_added"] == 23 and last["controller"]
    again, action = collect(site)
    assert not again["changed"] and again["events_added"] == 0 and len(action.calls) == 1


def test_check_mode_counts_but_writes_nothing(site):
    result, _ = collect(site, check_mode=True)
    assert result["changed"] and result["events_added"] == 23 and result["last_seq"] == 23
    with Store(str(site["db"])) as store:
        assert store.cursor("web1").seq == 0 and store.last_collection("web1") is None


def test_break_warns_by_default_and_fails_on_request(site):
    events = copy.deepcopy(site["chain"].events)
    events[14]["status"] = "failure"
    site["log"].write_text("".join(json.dumps(e) + "\n" for e in events))
    result, _ = collect(site)
    assert not result.get("failed") and not result["chain_ok"] and result["events_added"] == 14
    assert result["chain_error"]["seq"] == 15 and "seq 15" in result["warnings"][0]
    result, _ = collect(site, on_chain_break="fail")
    assert result["failed"] and "seq 15" in result["msg"]


def test_rewritten_log_behind_cursor_and_acceptance(site):
    collect(site)
    shorter = Chain("web1")
    for i in range(5):
        shorter.add(at=T0 + timedelta(days=2, hours=i), type="incremental")
    shorter.write(str(site["log"]))  # log recreated: seq restarts and ends before our cursor
    result, _ = collect(site)
    assert not result["chain_ok"] and "ends before the stored cursor" in result["chain_error"]["reason"]
    with pytest.raises(AnsibleActionFail, match="accept_reason"):
        collect(site, accept_chain_break=True)
    result, _ = collect(site, accept_chain_break=True, accept_reason="INC-7 disk replaced")
    assert result["chain_ok"] and result["events_added"] == 5 and "accepted" in result["warnings"][0]
    with Store(str(site["db"])) as store:
        assert store.cursor("web1").epoch == 1 and store.event_count("web1") == 28


def test_torn_line_warned_once(site):
    lines = site["chain"].lines().splitlines(keepends=True)
    site["log"].write_text("".join(lines[:10]) + '{"seq": 11, "to\n' + "".join(lines[10:]))
    result, _ = collect(site)
    assert result["chain_ok"] and result["events_added"] == 23
    assert any("torn writes" in w and "line 11" in w for w in result["warnings"])
    again, _ = collect(site)
    assert "warnings" not in again


def write_head(site: dict, event: dict) -> None:
    site["head"].write_text(json.dumps({"seq": event["seq"], "hash": event["hash"]}))


def test_rotation_with_head_file_is_not_a_break(site):
    write_head(site, site["chain"].events[-1])
    assert collect(site)[0]["chain_ok"]
    site["log"].write_text("")  # logrotate moved the log away; the agent has not appended yet
    result, _ = collect(site)
    assert result["chain_ok"] and result["events_added"] == 0
    nxt = Chain("web1")
    nxt.events = list(site["chain"].events)
    new = nxt.add(at=T0 + timedelta(days=2), type="incremental")
    site["log"].write_text(json.dumps(new) + "\n")  # the new file continues the chain
    write_head(site, new)
    result, _ = collect(site)
    assert result["chain_ok"] and result["events_added"] == 1 and result["last_seq"] == 24


def test_cut_off_tail_is_detected_with_the_head_file(site):
    write_head(site, site["chain"].events[-1])
    site["chain"].events = site["chain"].events[:20]  # the last 3 lines were removed before collection
    site["chain"].write(str(site["log"]))
    result, _ = collect(site)
    assert not result["chain_ok"] and result["events_added"] == 20
    assert result["chain_error"]["seq"] == 21 and "cut off" in result["chain_error"]["reason"]


def test_rotated_away_before_collection(site):
    collect(site)
    later = Chain("web1")
    later.events = list(site["chain"].events)
    for i in range(3):
        later.add(at=T0 + timedelta(days=2, hours=i), type="incremental")
    write_head(site, later.events[-1])
    site["log"].unlink()  # rotated (and compressed) before we saw seq 24..26
    result, _ = collect(site)
    assert not result["chain_ok"] and "rotated away" in result["chain_error"]["reason"]


def test_missing_log_is_not_an_error(site):
    site["log"].unlink()
    result, _ = collect(site)
    assert not result["changed"] and result["log_present"] is False and result["chain_ok"]
    assert "no audit log" in result["warnings"][0]


def test_host_side_failure_is_passed_through(site):
    action = make_action(CollectAction, {"store": "state/fleetsafe.db", "path": str(site["log"])})
    action._execute_module = lambda **kw: {"failed": True, "msg": "cannot read audit log: Permission denied; use become"}
    result = action.run(task_vars=site["vars"])
    assert result["failed"] and "become" in result["msg"]
    with Store(str(site["db"])) as store:
        assert store.last_collection("web1") is None


def test_relative_paths(tmp_path):
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.ini").write_text("")
    tv = {"ansible_inventory_sources": ["web1,", str(inv / "hosts.ini")], "playbook_dir": "/pb"}
    assert resolve_controller_path("state/x.db", "inventory", tv) == str(inv / "state" / "x.db")
    assert resolve_controller_path("state/x.db", "inventory", {"ansible_inventory_sources": [str(inv)], "playbook_dir": "/pb"}) == str(inv / "state" / "x.db")
    assert resolve_controller_path("state/x.db", "inventory", {"ansible_inventory_sources": ["localhost,"], "playbook_dir": "/pb"}) == "/pb/state/x.db"
    assert resolve_controller_path("state/x.db", "playbook", tv) == "/pb/state/x.db"
    assert resolve_controller_path("/abs/x.db", "playbook", tv) == "/abs/x.db"
    assert resolve_controller_path("x.db", "cwd", tv) == os.path.join(os.getcwd(), "x.db")


def test_fleet_report_action(site):
    collect(site)
    args = {"store": "state/fleetsafe.db", "dest": "reports", "hosts": ["web1", "ghost"], "policy": {"timezone": "UTC"}, "now": "2026-12-04T07:00:00Z"}
    result = make_action(ReportAction, dict(args)).run(task_vars=site["vars"])
    assert result["changed"] and result["summary"]["hosts"] == 2 and "ghost" in result["red_hosts"]
    assert os.path.isfile(os.path.join(result["report_dir"], "index.html"))
    fleet = json.loads((site["db"].parent.parent / "reports" / "latest" / "fleet.json").read_text())
    assert fleet["run"]["awx_job_id"] == "77"
    again = make_action(ReportAction, dict(args)).run(task_vars=site["vars"])
    assert not again["changed"] and again["report_dir"] is None  # nothing changed: no new report
    forced = make_action(ReportAction, {**args, "force": True, "fail_on_red": True}).run(task_vars=site["vars"])
    assert forced["changed"] and forced["failed"] and "ghost" in forced["msg"]
    check = make_action(ReportAction, {**args, "force": True}, check_mode=True).run(task_vars=site["vars"])
    assert check["changed"] and check["report_dir"] is None
    with pytest.raises(AnsibleActionFail, match="incr_days"):
        make_action(ReportAction, {**args, "policy": {"incr_days": "someday"}}).run(task_vars=site["vars"])


def test_fleet_report_without_store(tmp_path):
    tv = {"playbook_dir": str(tmp_path)}
    result = make_action(ReportAction, {"store": "none.db", "dest": "r", "hosts": ["a"]}).run(task_vars=tv)
    assert result["summary"]["red"] == 1 and "does not exist" in result["warnings"][0]
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("name", ["audit_collect", "fleet_report"])
def test_documentation_matches_argument_spec(name):
    """validate-modules' doc/argspec check, runnable offline (ECOSYSTEM C4/C5/C10)."""
    import importlib

    import yaml
    from ansible_collections.fleetsafe.backup.plugins.action.fleet_report import (
        ARGUMENT_SPEC,
    )
    from ansible_collections.fleetsafe.backup.plugins.module_utils._audit_read import (
        AUDIT_COLLECT_INTERNAL_SPEC,
        AUDIT_COLLECT_USER_SPEC,
    )

    module = importlib.import_module(f"ansible_collections.fleetsafe.backup.plugins.modules.{name}")
    doc = yaml.safe_load(module.DOCUMENTATION)
    spec = {**AUDIT_COLLECT_USER_SPEC, **AUDIT_COLLECT_INTERNAL_SPEC} if name == "audit_collect" else ARGUMENT_SPEC
    assert doc["version_added"] == "0.1.0" and doc["attributes"]["check_mode"]["support"] == "full"
    assert set(doc["options"]) == set(spec)
    for option, entry in spec.items():
        documented = doc["options"][option]
        assert documented["type"] == entry["type"], option
        assert documented.get("default") == entry.get("default"), option
        assert documented.get("choices") == entry.get("choices"), option
        assert bool(documented.get("required")) == bool(entry.get("required")), option
    for key, value in yaml.safe_load(module.RETURN).items():
        assert {"description", "returned", "type", "sample"} <= set(value), key
    for task in yaml.safe_load(module.EXAMPLES):
        assert any(k.startswith(("fleetsafe.backup.", "ansible.builtin.")) for k in task), task
