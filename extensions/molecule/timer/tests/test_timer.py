"""After side_effect started fleetsafe-incremental.service — what systemd does when the
timer elapses — the host made a snapshot by itself and its audit log says so."""

from __future__ import annotations

import json
import time

AGENT = "/usr/local/bin/fleetsafe"
AUDIT = "/var/log/fleetsafe/audit.jsonl"
SERVICE = "fleetsafe-incremental.service"
LOCK = "/var/lib/fleetsafe/agent.lock"


def agent(host, *args: str) -> dict:
    r = host.run(f"{AGENT} --json {' '.join(args)}")
    doc = json.loads(r.stdout)
    doc["_rc"] = r.rc
    return doc


def audit_events(host) -> list[dict]:
    return [json.loads(line) for line in host.file(AUDIT).content_string.splitlines() if line.strip()]


def test_timer_fired_by_itself(host):
    """side_effect let the timer elapse (a drop-in, since removed): systemd started the
    agent with no control node involved, and the role's schedule is back."""
    last = host.check_output("systemctl show -p LastTriggerUSec --value fleetsafe-incremental.timer")
    assert last not in ("", "n/a"), last
    assert not host.file("/etc/systemd/system/fleetsafe-incremental.timer.d").exists
    cal = host.check_output("systemctl show -p TimersCalendar --value fleetsafe-incremental.timer")
    assert "OnCalendar=*-*-* 08..20:00:00" in cal, cal
    timer_runs = [e for e in audit_events(host)
                  if e["action"] == "backup" and e["actor"]["via"] == "timer" and e["status"] == "success"]
    assert len(timer_runs) >= 2, "expected the timer-fired run and the started one"


def test_service_ran_to_success(host):
    props = dict(line.split("=", 1) for line in host.check_output(
        f"systemctl show -p Result -p ExecMainStatus -p Type {SERVICE}").splitlines())
    assert props == {"Result": "success", "ExecMainStatus": "0", "Type": "oneshot"}, props


def test_timer_made_an_incremental_snapshot(host):
    snaps = agent(host, "snapshots")["snapshots"]
    incr = [s for s in snaps if s["type"] == "incremental"]
    assert incr, snaps
    assert incr[-1]["status"] == "success"


def test_audit_log_records_the_timer_run(host):
    events = audit_events(host)
    runs = [e for e in events if e["action"] == "backup" and e["actor"]["via"] == "timer"]
    assert runs, [(e["action"], e["actor"]) for e in events]
    last = runs[-1]
    assert last["status"] == "success" and last["details"]["type"] == "incremental"
    snaps = {s["id"] for s in agent(host, "snapshots")["snapshots"]}
    assert last["details"]["snapshot_id"] in snaps


def test_audit_chain_is_intact(host):
    doc = agent(host, "audit", "--verify-chain")
    assert doc["chain_ok"] is True, doc


def test_journal_has_the_run(host):
    out = host.check_output(f"journalctl -u {SERVICE} --no-pager -o cat")
    assert "Finished" in out or "Deactivated successfully" in out or out.strip(), out


def test_overlapping_run_exits_locked_and_makes_no_snapshot(host):
    """Two runs at once (a slow full run and the next hourly one): the second exits
    4 "locked" and does not run twice; the unit counts 4 as success (SuccessExitStatus)."""
    before = len(agent(host, "snapshots")["snapshots"])
    holder = host.run(
        "systemd-run --unit fleetsafe-test-lockholder --collect --quiet "
        f"/usr/bin/flock --exclusive {LOCK} /bin/sleep 20")
    assert holder.rc == 0, holder.stderr
    try:
        for _ in range(50):
            if host.run(f"flock --nonblock {LOCK} true").rc != 0:
                break
            time.sleep(0.1)
        second = agent(host, "backup", "--type", "incremental")
        assert second["_rc"] == 4 and second["error"] == "locked", second
        r = host.run(f"systemctl start {SERVICE}")
        assert r.rc == 0, r.stderr
        assert host.check_output(f"systemctl show -p ExecMainStatus --value {SERVICE}") == "4"
    finally:
        host.run("systemctl stop fleetsafe-test-lockholder")
    assert len(agent(host, "snapshots")["snapshots"]) == before
