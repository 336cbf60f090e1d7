"""Fleet report rules with a fixed "now": ages vs policy, colours, controls, JSON shape, files."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._report import (
    CONTROLS,
    ReportError,
    build_report,
    incremental_slots,
    merge_policy,
    rule_full,
    rule_incremental,
    write_report,
)
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._report_html import (
    render_html,
)
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._store import Store
from ansible_collections.fleetsafe.backup.tests.unit.plugins.plugin_utils.audit_chain import (
    Chain,
    healthy_day,
)

NOW = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)  # a Thursday, inside the 08–20 window
POLICY = merge_policy({"timezone": "UTC"})


def backup(at: datetime, kind: str = "full", status: str = "success") -> dict:
    c = Chain()
    return c.add(at=at, type=kind, status=status)


@pytest.fixture
def store(tmp_path):
    with Store(str(tmp_path / "fleetsafe.db")) as s:
        yield s


def collected(store: Store, chain: Chain, at: datetime = NOW) -> None:
    result = store.add_events(chain.host, chain.events, now=at)
    assert result.chain_ok
    store.record_collection(chain.host, started=at, finished=at, events_added=result.added, last_seq=result.last_seq, chain_ok=True, error=None)


def host(report: dict, name: str) -> dict:
    return next(h for h in report["hosts"] if h["name"] == name)


# --- FREQ-FULL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "status"),
    [(timedelta(days=2), "green"), (timedelta(days=6, hours=23), "green"), (timedelta(days=7, hours=6), "amber"), (timedelta(days=8), "red")],
)
def test_full_age_against_policy(age, status):
    check = rule_full(backup(NOW - age), POLICY, NOW)
    assert check["status"] == status and check["controls"] == ["FREQ-FULL"]
    assert check["max_age_hours"] == 7 * 24


def test_no_full_is_red_and_policy_override_applies():
    assert rule_full(None, POLICY, NOW)["status"] == "red"
    strict = merge_policy({"full_max_age_days": 1, "timezone": "UTC"})
    assert rule_full(backup(NOW - timedelta(days=2)), strict, NOW)["status"] == "red"


# --- FREQ-INCR -----------------------------------------------------------------------------


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(3, 15, 30), at(3, 15)),  # in the window: the last whole hour once slack passed
        (at(3, 15, 20), at(3, 14)),  # 15:00 + 30 min slack not reached yet
        (at(3, 23, 0), at(3, 20)),  # evening: the window's last run
        (at(4, 7, 0), at(3, 20)),  # early morning: yesterday's last run
        (at(4, 8, 10), at(3, 20)),  # 08:00 run not yet due
        (at(4, 8, 45), at(4, 8)),
    ],
)
def test_incremental_expected_slot(now, expected):
    due, _ = incremental_slots(POLICY, now, UTC)
    assert due == expected


def test_incremental_days_and_zone():
    weekdays = merge_policy({"timezone": "UTC", "incr_days": ["mon", "tue", "wed", "thu", "fri"]})
    due, _ = incremental_slots(weekdays, at(6, 12), UTC)  # Sunday noon -> Friday 20:00
    assert due == at(4, 20)
    berlin = merge_policy({"timezone": "Europe/Berlin"})
    from zoneinfo import ZoneInfo

    due, _ = incremental_slots(berlin, at(3, 15, 45), ZoneInfo("Europe/Berlin"))  # 16:45 local
    assert due == at(3, 15)  # 16:00 Berlin


@pytest.mark.parametrize(
    ("last", "now", "status"),
    [
        (at(3, 15, 0), at(3, 15, 30), "green"),
        (at(3, 14, 0), at(3, 15, 30), "amber"),  # one run missed
        (at(3, 12, 0), at(3, 15, 30), "red"),
        (at(3, 20, 0), at(4, 7, 0), "green"),  # overnight: yesterday's 20:00 is what is due
        (at(3, 19, 0), at(4, 7, 0), "amber"),
        (at(3, 15, 0), at(4, 7, 0), "red"),
    ],
)
def test_incremental_status(last, now, status):
    event = backup(last + timedelta(seconds=4) + timedelta(seconds=30), "incremental")  # started 30 s after the slot
    check = rule_incremental(event, POLICY, now, UTC)
    assert check["status"] == status, check["message"]
    assert check["controls"] == ["FREQ-INCR"]


def test_incremental_window_in_the_hosts_offset():
    """An event with a local offset puts the window in the host's time (no policy.timezone)."""
    policy = merge_policy({})
    event = backup(at(3, 7, 0, ) + timedelta(seconds=34), "incremental")  # 07:00 UTC = 08:00 at +01:00
    event["start"] = "2026-12-03T08:00:30+01:00"
    check = rule_incremental(event, policy, at(3, 7, 40), UTC)  # 08:40 local: the 08:00 run is due
    assert check["status"] == "green" and check["window_timezone"] == "UTC+01:00"
    assert check["expected_since"] == "2026-12-03T07:00:00.000000Z"
    # the same in UTC would expect yesterday's 20:00 run and be satisfied trivially; with the
    # policy zone set, the offset is ignored
    assert rule_incremental(event, POLICY, at(3, 7, 40), UTC)["window_timezone"] == "UTC"


def test_no_incremental_is_red():
    assert rule_incremental(None, POLICY, NOW, UTC)["status"] == "red"


# --- whole report from the store -----------------------------------------------------------


def test_host_without_data_appears_and_is_red(store):
    chain = Chain("web1")
    healthy_day(chain, NOW)
    collected(store, chain)
    report = build_report(store, ["web1", "ghost"], POLICY, NOW)
    assert [h["name"] for h in report["hosts"]] == ["web1", "ghost"]
    ghost = host(report, "ghost")
    assert ghost["status"] == "red" and ghost["has_data"] is False and "no data" in ghost["reasons"][0]["message"]
    assert host(report, "web1")["status"] == "green", host(report, "web1")["reasons"]
    assert report["summary"] == {"hosts": 2, "green": 1, "amber": 0, "red": 1}


def test_run_failure_is_red_with_its_reason_until_a_later_collection(store):
    """MON-ALERT: an unreachable host keeps its data but its row says why this run failed."""
    chain = Chain("web1")
    healthy_day(chain, NOW)
    collected(store, chain, at=NOW - timedelta(hours=1))
    store.record_run_failure("web1", "unreachable: ssh: connect to host 127.0.0.1 port 22001: Connection refused", now=NOW)
    store.record_run_failure("ghost", "unreachable: Name or service not known", now=NOW)
    report = build_report(store, ["web1", "ghost"], POLICY, NOW)
    web1, ghost = host(report, "web1"), host(report, "ghost")
    assert web1["status"] == "red" and web1["last_run"]["status"] == "red"
    assert "Connection refused" in web1["reasons"][0]["message"] and "MON-ALERT" in web1["reasons"][0]["controls"]
    assert ghost["status"] == "red" and ghost["has_data"] is False
    assert "Name or service not known" in ghost["reasons"][0]["message"]
    assert "no data" in ghost["reasons"][1]["message"]
    # the next run reaches web1 again: the failure is history, the row is green
    collected(store, chain, at=NOW + timedelta(minutes=5))
    later = host(build_report(store, ["web1"], POLICY, NOW + timedelta(minutes=5)), "web1")
    assert later["last_run"]["status"] == "green" and later["status"] == "green", later["reasons"]


def test_missing_store_reports_every_host(tmp_path):
    report = build_report(None, ["a", "b"], POLICY, NOW)
    assert [h["status"] for h in report["hosts"]] == ["red", "red"]


def test_json_shape_and_controls_cited(store):
    chain = Chain("web1")
    healthy_day(chain, NOW)
    collected(store, chain)
    report = build_report(store, ["web1"], POLICY, NOW, run={"awx_job_id": "42"}, store_path="/x/fleetsafe.db")
    for key in ("schema_version", "generated_at", "policy", "hosts", "summary", "controls", "fingerprint", "run", "daily_backups"):
        assert key in report
    assert report["run"]["awx_job_id"] == "42" and report["generated_at"] == "2026-12-03T15:30:00.000000Z"
    entry = host(report, "web1")
    figures = ("last_full", "last_incremental", "last_backup", "verify", "audit_chain", "failures", "collection")
    for figure in figures:
        assert entry[figure]["controls"], figure
        assert set(entry[figure]["controls"]) <= set(CONTROLS), figure
        assert entry[figure]["status"] in ("green", "amber", "red")
    assert entry["last_full"]["bytes_added"] == 10_000_000 and entry["last_full"]["duration_seconds"] == 600
    assert entry["verify"]["mode"] == "structural" and entry["verify"]["last_read_data"]
    assert entry["audit_chain"]["chain_status"] == "ok" and entry["audit_chain"]["last_seq"] == len(chain.events)
    json.dumps(report)  # serialisable as is


def test_failures_verify_and_escalation(store):
    chain = Chain("db1")
    chain.add(at=NOW - timedelta(days=3), type="full")
    chain.add("verify", at=NOW - timedelta(days=3, hours=-1), status="damaged", problems=[{"object": "p/1", "problem": "sha256 mismatch"}])
    chain.add(at=NOW - timedelta(hours=30), type="incremental", status="failure")
    chain.add(at=NOW - timedelta(hours=2), type="incremental", status="failure")
    collected(store, chain)
    entry = host(build_report(store, ["db1"], POLICY, NOW), "db1")
    assert entry["status"] == "red"
    assert entry["verify"]["status"] == "red" and entry["verify"]["problems"] == 1
    assert entry["failures"]["status"] == "red" and "MON-ESCALATE" in entry["failures"]["controls"]
    assert entry["failures"]["count"] == 1  # only the one inside the 24 h window
    assert entry["failures"]["open_failure_hours"] == 30.0
    assert {c for r in entry["reasons"] for c in r["controls"]} >= {"VER-CHECKSUM", "MON-ESCALATE", "FREQ-INCR"}


@pytest.mark.parametrize("scope", [False, True, None])
def test_subset_backups_do_not_count_as_full_or_incremental(store, scope):
    """details.policy_scope false (a backup of only some sources) is not FREQ-FULL / FREQ-INCR
    evidence; true or missing (older agents) is."""
    extra = {} if scope is None else {"policy_scope": scope}
    chain = Chain("web1")
    chain.add(at=NOW - timedelta(days=10), type="full")
    chain.add(at=NOW - timedelta(hours=5), type="incremental")
    chain.add(at=NOW - timedelta(days=1), type="full", **extra)
    chain.add(at=at(3, 15, 0) + timedelta(seconds=30), type="incremental", **extra)
    collected(store, chain)
    entry = host(build_report(store, ["web1"], POLICY, NOW), "web1")
    if scope is False:
        assert entry["last_full"]["status"] == "red" and entry["last_incremental"]["status"] == "red"
        assert entry["last_full"]["snapshot_id"] == chain.events[0]["details"]["snapshot_id"]
    else:
        assert entry["last_full"]["status"] == "green" and entry["last_incremental"]["status"] == "green"
        assert entry["last_full"]["snapshot_id"] == chain.events[2]["details"]["snapshot_id"]


def test_locked_runs_are_not_failures(store):
    """status "locked" (another run held the lock) is neither a failure nor a failed bar."""
    chain = Chain("web1")
    healthy_day(chain, NOW)
    chain.add(at=NOW - timedelta(minutes=20), type="incremental", status="locked")
    collected(store, chain)
    report = build_report(store, ["web1"], POLICY, NOW)
    entry = host(report, "web1")
    assert entry["failures"]["status"] == "green" and entry["failures"]["count"] == 0
    assert entry["status"] == "green", entry["reasons"]
    today = report["daily_backups"]["days"][-1]
    assert today["day"] == "2026-12-03" and today["failure"] == 0
    # a failure followed by a locked run is still the latest attempt that failed
    chain.add(at=NOW - timedelta(minutes=15), type="incremental", status="failure")
    chain.add(at=NOW - timedelta(minutes=10), type="incremental", status="locked")
    store.add_events("web1", chain.events)
    report = build_report(store, ["web1"], POLICY, NOW)
    assert host(report, "web1")["failures"]["status"] == "red"
    assert report["daily_backups"]["days"][-1]["failure"] == 1


def test_html_policy_table_shows_only_the_applied_keys(store):
    chain = Chain("web1")
    healthy_day(chain, NOW)
    collected(store, chain)
    site = merge_policy({"timezone": "UTC", "incremental_interval_minutes": 0, "verify_max_age_days": 1})
    html = render_html(build_report(store, ["web1"], site, NOW))
    table = html.split('<section id="policy">', 1)[1].split("</section>", 1)[0]
    dl = table.split('<dl class="policy">', 1)[1]
    assert "<dt>incr_interval_minutes</dt><dd>60</dd>" in dl
    assert "<dt>verify_max_age_hours</dt><dd>26</dd>" in dl
    assert "<dt>verify_grace_hours</dt>" in dl and "<dt>timezone</dt><dd>UTC</dd>" in dl
    assert "incremental_interval_minutes" not in dl and "verify_max_age_days" not in dl
    assert "Only the settings this report applies" in table


def test_agent_verify_events(store):
    """The agent writes verify events as status success/failure, details.result ok/damaged,
    details.problems as a count and details.read_data_percent (agent/fleetsafe/cli.py)."""
    chain = Chain("app1")
    healthy_day(chain, NOW)
    chain.add("verify", at=NOW - timedelta(minutes=10), status="success", result="ok", read_data_percent=5.0, problems=0, blobs_checked=40)
    collected(store, chain)
    entry = host(build_report(store, ["app1"], POLICY, NOW), "app1")
    assert entry["verify"]["status"] == "green" and entry["verify"]["mode"] == "read-data"
    chain.add("verify", at=NOW - timedelta(minutes=5), status="failure", result="damaged", read_data_percent=0.0, problems=2)
    chain.add("verify", at=NOW - timedelta(minutes=2), status="failure", error="target")
    store.add_events("app1", chain.events)
    entry = host(build_report(store, ["app1"], POLICY, NOW), "app1")
    assert entry["verify"]["status"] == "red" and entry["verify"]["result"] == "failed"
    assert "could not run" in entry["verify"]["message"]


def test_partial_and_denied_are_amber(store):
    chain = Chain("ws1")
    healthy_day(chain, NOW)
    chain.add("restore", at=NOW - timedelta(minutes=5), status="denied")
    collected(store, chain)
    entry = host(build_report(store, ["ws1"], POLICY, NOW), "ws1")
    assert entry["status"] == "amber" and entry["failures"]["denied"] == 1
    assert "AUD-MON" in entry["failures"]["controls"]


def test_stale_store_and_broken_chain(store):
    chain = Chain("web1")
    healthy_day(chain, NOW)
    collected(store, chain, at=NOW - timedelta(hours=40))
    entry = host(build_report(store, ["web1"], POLICY, NOW), "web1")
    assert entry["collection"]["status"] == "amber" and entry["status"] == "amber"
    broken = Chain("web1")
    healthy_day(broken, NOW + timedelta(days=1))  # a different log: seq restarts
    store.add_events("web1", broken.events)
    entry = host(build_report(store, ["web1"], POLICY, NOW), "web1")
    assert entry["audit_chain"]["status"] == "red" and entry["status"] == "red"
    assert entry["reasons"][0]["controls"] == ["AUD-LOG"]


def test_fingerprint_ignores_time_but_not_status(store):
    chain = Chain("web1")
    healthy_day(chain, NOW)
    collected(store, chain)
    a = build_report(store, ["web1"], POLICY, NOW)
    b = build_report(store, ["web1"], POLICY, NOW + timedelta(minutes=5))
    c = build_report(store, ["web1"], POLICY, NOW + timedelta(hours=3))  # incrementals now missing
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]


def test_policy_validation():
    with pytest.raises(ReportError, match="full_max_age_days"):
        merge_policy({"full_max_age_days": "weekly"})
    with pytest.raises(ReportError, match="incr_days"):
        merge_policy({"incr_days": ["funday"]})
    with pytest.raises(ReportError, match="timezone"):
        merge_policy({"timezone": "Mars/Olympus"})
    assert merge_policy({"retention_days": 365})["retention_days"] == 365  # shared keys pass through
    assert merge_policy({"verify_max_age_days": 2})["verify_max_age_hours"] == 50  # the site profile's key


def test_html_is_self_contained_and_escaped(store):
    chain = Chain("<b>evil</b>")
    healthy_day(chain, NOW)
    collected(store, chain)
    html = render_html(build_report(store, ["<b>evil</b>", "ghost"], POLICY, NOW))
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil&lt;/b&gt;" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html and "<link" not in html
    assert 'data-host="ghost" data-status="red"' in html and "no data" in html
    for cid in ("FREQ-FULL", "FREQ-INCR", "VER-CHECKSUM", "ENC-TEST", "AUD-LOG", "MON-DAILY", "CONSOLE", "LOC-ONSITE"):
        assert cid in html
    assert "<svg" in html


def test_write_report_and_latest(tmp_path, store):
    report = build_report(store, ["ghost"], POLICY, NOW)
    first = write_report(str(tmp_path), report, render_html(report))
    assert os.path.basename(first) == "20261203T153000Z"
    second = write_report(str(tmp_path), report, render_html(report))
    assert os.path.basename(second) == "20261203T153000Z-1"
    latest = tmp_path / "latest"
    assert latest.is_symlink() and os.readlink(latest) == "20261203T153000Z-1"
    assert json.loads((latest / "fleet.json").read_text())["hosts"][0]["name"] == "ghost"
    assert (latest / "index.html").read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp leftovers
