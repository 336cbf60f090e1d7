# Private to this collection: no compatibility promise, do not import from other collections.
"""The fleet report (MON-DAILY, CONSOLE): figures per host from the central store only.

Contract (docs/report.md):

* ``build_report(store, hosts, policy, now)`` returns the ``fleet.json``
  document.  Every host named in ``hosts`` gets a row, also when the store
  knows nothing about it ("no data" is red, never a missing row).
* Each figure carries the policy control IDs it is evidence for
  (``controls``), and each host an overall ``status`` (green / amber / red)
  with the ``reasons`` that made it so.  The rules are pure functions of the
  store's events, the merged policy and ``now`` (UTC), so a fixed ``now``
  gives a reproducible report.
* ``write_report`` writes ``<dest>/<UTC stamp>/{index.html,fleet.json}`` and
  points ``<dest>/latest`` at it; nothing is read from or written to the
  managed hosts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ansible_collections.fleetsafe.backup.plugins.plugin_utils._store import (
    NOT_FAILURE_STATUSES,
    Store,
    iso,
    parse_ts,
)

REPORT_SCHEMA_VERSION = 1

#: the controls this report gives evidence for, as the policy names them (shared/POLICY.md)
CONTROLS: dict[str, str] = {
    "FREQ-FULL": "Full backup of every critical host, weekly",
    "FREQ-INCR": "Incremental backups at intervals 08:00–20:00 daily",
    "LOC-ONSITE": "A copy on onsite storage (the primary target)",
    "VER-CHECKSUM": "Checksum validation of backup files",
    "ENC-TEST": "Encryption tested periodically (decrypt and authenticate)",
    "AUD-LOG": "Structured, append-only, tamper-evident central audit log",
    "AUD-MON": "Audit trail monitored for anomalies (denied attempts)",
    "MON-DAILY": "Daily review of backup logs",
    "MON-ESCALATE": "Errors resolved within 24 h, escalated if not",
    "CONSOLE": "One console showing the state of all backups",
}

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

DEFAULT_POLICY: dict[str, Any] = {
    # FREQ-FULL: the last full backup may be this old; within the grace it is amber (a long full may still run)
    "full_max_age_days": 7,
    "full_grace_hours": 12,
    # FREQ-INCR: hourly runs on the hour from start to end hour (inclusive), local time, on these days
    "incr_window_start": 8,
    "incr_window_end": 20,
    "incr_interval_minutes": 60,
    "incr_days": list(WEEKDAYS),
    # a run counts as missed only this long after its slot (timer jitter, run time)
    "incr_slack_minutes": 30,
    # VER-CHECKSUM: daily structural check; ENC-TEST: weekly read-data sample
    "verify_max_age_hours": 26,
    "read_data_max_age_days": 7,
    "verify_grace_hours": 12,
    # MON-DAILY: failures counted over this window; the store must be fresher than this
    "failure_window_hours": 24,
    "collect_max_age_hours": 26,
    # MON-ESCALATE: a backup failure unresolved this long is red
    "escalate_after_hours": 24,
    # IANA zone for the incremental window; null = the controller's local zone
    "timezone": None,
    # days of history in the chart
    "history_days": 14,
}

_INT_KEYS = (
    "full_max_age_days",
    "full_grace_hours",
    "incr_window_start",
    "incr_window_end",
    "incr_interval_minutes",
    "incr_slack_minutes",
    "verify_max_age_hours",
    "read_data_max_age_days",
    "verify_grace_hours",
    "failure_window_hours",
    "collect_max_age_hours",
    "escalate_after_hours",
    "history_days",
)

GREEN, AMBER, RED = "green", "amber", "red"
_RANK = {GREEN: 0, AMBER: 1, RED: 2}


class ReportError(Exception):
    """Bad policy or an unwritable destination."""


def merge_policy(given: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with the site's policy.  Unknown keys are kept (other
    parts of the collection share ``fleetsafe_policy``) but not interpreted."""
    policy = dict(DEFAULT_POLICY)
    given = dict(given or {})
    if "verify_max_age_days" in given and "verify_max_age_hours" not in given:
        # the site playbook's policy profile speaks in days; a daily job gets 2 h of jitter
        try:
            given["verify_max_age_hours"] = int(given["verify_max_age_days"]) * 24 + 2
        except (TypeError, ValueError) as exc:
            raise ReportError(f"policy.verify_max_age_days: expected an integer, got {given['verify_max_age_days']!r}") from exc
    for key, value in given.items():
        if value is not None or key == "timezone":
            policy[key] = value
    for key in _INT_KEYS:
        try:
            policy[key] = int(policy[key])
        except (TypeError, ValueError) as exc:
            raise ReportError(f"policy.{key}: expected an integer, got {policy[key]!r}") from exc
        if policy[key] < 0:
            raise ReportError(f"policy.{key}: must not be negative, got {policy[key]}")
    if not 0 <= policy["incr_window_start"] <= policy["incr_window_end"] <= 23:
        raise ReportError("policy: need 0 <= incr_window_start <= incr_window_end <= 23")
    if policy["incr_interval_minutes"] < 1:
        raise ReportError("policy.incr_interval_minutes: must be at least 1")
    days = policy["incr_days"]
    if isinstance(days, str):
        days = [d.strip() for d in days.split(",") if d.strip()]
    if not isinstance(days, list) or any(str(d).lower()[:3] not in WEEKDAYS for d in days):
        raise ReportError(f"policy.incr_days: expected weekday names ({', '.join(WEEKDAYS)}), got {policy['incr_days']!r}")
    policy["incr_days"] = [str(d).lower()[:3] for d in days]
    _zone(policy)  # validate early
    return policy


def _zone(policy: dict[str, Any]) -> tzinfo:
    name = policy.get("timezone")
    if not name:
        # the controller's local zone (fixed offset of "now"; good enough outside DST changes)
        local = datetime.now().astimezone().tzinfo
        return local or UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportError(f"policy.timezone: unknown time zone {name!r}") from exc


# --- rules ---------------------------------------------------------------------------


def incremental_slots(policy: dict[str, Any], now: datetime, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    """(latest due slot, the one before it) of the incremental schedule, in UTC.

    A slot is *due* once ``slot + incr_slack_minutes <= now``.  During the
    window that is the last whole hour (minus slack); outside it, it is the
    last slot of the previous window (20:00 by default).  Looks back 8 days,
    enough for any weekly day list.
    """
    local_now = now.astimezone(zone)
    slack = timedelta(minutes=policy["incr_slack_minutes"])
    step = timedelta(minutes=policy["incr_interval_minutes"])
    due: list[datetime] = []
    for back in range(8, -1, -1):
        day = (local_now - timedelta(days=back)).date()
        if WEEKDAYS[day.weekday()] not in policy["incr_days"]:
            continue
        slot = datetime(day.year, day.month, day.day, policy["incr_window_start"], tzinfo=zone)
        end = datetime(day.year, day.month, day.day, policy["incr_window_end"], tzinfo=zone)
        while slot <= end:
            if slot + slack <= local_now:
                due.append(slot.astimezone(UTC))
            slot += step
    if not due:
        return None, None
    return due[-1], (due[-2] if len(due) > 1 else None)


def _event_time(event: dict[str, Any], key: str = "start") -> datetime | None:
    """The event's point in time: ``start`` is the restore point of a backup; falls back to ``ts``."""
    return parse_ts(event.get(key)) or parse_ts(event.get("ts"))


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600.0, 2)


def _age_text(hours: float) -> str:
    if hours < 1:
        return f"{int(hours * 60)} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _details(event: dict[str, Any] | None) -> dict[str, Any]:
    if not event:
        return {}
    details = event.get("details")
    return details if isinstance(details, dict) else {}


def _duration(event: dict[str, Any]) -> float | None:
    details = _details(event)
    for key in ("duration_seconds", "duration"):
        if isinstance(details.get(key), int | float):
            return float(details[key])
    start, end = parse_ts(event.get("start")), parse_ts(event.get("end"))
    return round((end - start).total_seconds(), 3) if start and end else None


def _snapshot_figure(event: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    if not event:
        return {"present": False}
    when = _event_time(event)
    details = _details(event)
    return {
        "present": True,
        "time": iso(when) if when else None,
        "end": event.get("end") or event.get("ts"),
        "age_hours": _hours(now - when) if when else None,
        "snapshot_id": details.get("snapshot_id"),
        "result": event.get("status"),
        "bytes_added": details.get("bytes_added"),
        "duration_seconds": _duration(event),
        "target": details.get("target"),
        "seq": event.get("seq"),
    }


def _check(controls: list[str], status: str, message: str, **figures: Any) -> dict[str, Any]:
    return {"controls": controls, "status": status, "message": message, **figures}


def rule_full(last_full: dict[str, Any] | None, policy: dict[str, Any], now: datetime) -> dict[str, Any]:
    fig = _snapshot_figure(last_full, now)
    limit = policy["full_max_age_days"] * 24
    grace = limit + policy["full_grace_hours"]
    fig["max_age_hours"] = limit
    if not fig["present"]:
        return _check(["FREQ-FULL"], RED, "no full backup in the store", **fig)
    age = fig["age_hours"] if fig["age_hours"] is not None else float("inf")
    if age > grace:
        return _check(["FREQ-FULL"], RED, f"last full backup {_age_text(age)} old (policy: {policy['full_max_age_days']} days)", **fig)
    if age > limit:
        return _check(["FREQ-FULL"], AMBER, f"full backup due: last one {_age_text(age)} old", **fig)
    if fig["result"] == "partial":
        return _check(["FREQ-FULL"], AMBER, "last full backup was partial (see failures)", **fig)
    return _check(["FREQ-FULL"], GREEN, f"last full {_age_text(age)} ago", **fig)


def host_zone(event: dict[str, Any] | None, policy: dict[str, Any], default: tzinfo) -> tzinfo:
    """The zone of a host's incremental window.

    ``policy.timezone`` wins.  Otherwise, when the host's event carries a
    local offset (``start`` like ``…T09:00:00+01:00``), that offset is the
    host's local time; the agent writes UTC (``Z``), and then the
    controller's zone (``default``) is used.
    """
    if policy.get("timezone") or not event:
        return default
    raw = event.get("start") or event.get("ts")
    if not isinstance(raw, str) or raw.endswith("Z"):
        return default
    dt = parse_ts(raw)
    if dt is None or dt.utcoffset() is None or dt.utcoffset() == timedelta(0):
        return default
    return dt.tzinfo or default


def rule_incremental(last_incr: dict[str, Any] | None, policy: dict[str, Any], now: datetime, zone: tzinfo) -> dict[str, Any]:
    fig = _snapshot_figure(last_incr, now)
    zone = host_zone(last_incr, policy, zone)
    due, before = incremental_slots(policy, now, zone)
    fig["expected_since"] = iso(due) if due else None
    fig["window_timezone"] = str(zone)
    if due is None:
        return _check(["FREQ-INCR"], GREEN, "no incremental run is due under the policy's days", **fig)
    if not fig["present"]:
        return _check(["FREQ-INCR"], RED, "no incremental backup in the store", **fig)
    when = parse_ts(fig["time"])
    label = due.astimezone(zone).strftime("%a %H:%M")
    if when is not None and when >= due:
        if fig["result"] == "partial":
            return _check(["FREQ-INCR"], AMBER, "last incremental was partial (see failures)", **fig)
        return _check(["FREQ-INCR"], GREEN, f"the {label} run is in", **fig)
    if when is not None and before is not None and when >= before:
        return _check(["FREQ-INCR"], AMBER, f"missed the {label} run (last {_age_text(fig['age_hours'])} ago)", **fig)
    return _check(["FREQ-INCR"], RED, f"no incremental since {label} and the run before (last {_age_text(fig['age_hours'] or 0)} ago)", **fig)


def _is_read_data(event: dict[str, Any]) -> bool:
    """A verify that decrypted and authenticated data (ENC-TEST), however the agent spelled it."""
    details = _details(event)
    if details.get("read_data") is True or details.get("mode") in ("read-data", "read_data"):
        return True
    for key in ("read_data_percent", "read_data_subset"):
        value = details.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return True
    return False


def _verify_problems(event: dict[str, Any]) -> int:
    """Problems a verify found (0 = the data checked out); at least 1 when it says damaged."""
    details = _details(event)
    problems = details.get("problems")
    count = len(problems) if isinstance(problems, list) else problems if isinstance(problems, int) and not isinstance(problems, bool) else 0
    if event.get("status") == "damaged" or "damaged" in (details.get("status"), details.get("result")):
        count = max(count, 1)
    return count


def _verify_failed_to_run(event: dict[str, Any]) -> bool:
    """The agent could not verify at all (no key, target down): not a verdict on the data."""
    return event.get("status") in ("failure", "refused") and _verify_problems(event) == 0


def rule_verify(verifies: list[dict[str, Any]], policy: dict[str, Any], now: datetime) -> dict[str, Any]:
    """VER-CHECKSUM from the newest verify of any kind, ENC-TEST from the newest read-data one."""
    last = verifies[0] if verifies else None
    last_rd = next((v for v in verifies if _is_read_data(v)), None)
    fig: dict[str, Any] = {"present": last is not None}
    if last is None:
        return _check(["VER-CHECKSUM", "ENC-TEST"], AMBER, "never verified", **fig)
    when = _event_time(last, "end")
    problems = _verify_problems(last)
    fig.update(
        {
            "time": iso(when) if when else None,
            "age_hours": _hours(now - when) if when else None,
            "mode": "read-data" if _is_read_data(last) else "structural",
            "result": "damaged" if problems else "ok",
            "problems": problems,
        }
    )
    rd_when = _event_time(last_rd, "end") if last_rd else None
    rd_age = _hours(now - rd_when) if rd_when else None
    fig["last_read_data"] = iso(rd_when) if rd_when else None
    fig["read_data_age_hours"] = rd_age
    if problems:
        return _check(["VER-CHECKSUM", "ENC-TEST"], RED, f"last verify found {problems} problem(s): repository damaged", **fig)
    if _verify_failed_to_run(last):
        fig["result"] = "failed"
        return _check(["VER-CHECKSUM"], RED, f"last verify could not run: {_first_error(last) or 'see audit event seq ' + str(last.get('seq'))}", **fig)
    age = fig["age_hours"] if fig["age_hours"] is not None else float("inf")
    if age > policy["verify_max_age_hours"] + policy["verify_grace_hours"]:
        return _check(["VER-CHECKSUM"], RED, f"last verify {_age_text(age)} old (policy: daily)", **fig)
    if age > policy["verify_max_age_hours"]:
        return _check(["VER-CHECKSUM"], AMBER, f"verify overdue: last one {_age_text(age)} old", **fig)
    rd_limit = policy["read_data_max_age_days"] * 24 + policy["verify_grace_hours"]
    if rd_age is None or rd_age > rd_limit:
        text = "no read-data verify yet" if rd_age is None else f"last read-data verify {_age_text(rd_age)} old"
        return _check(["ENC-TEST"], AMBER, f"{text} (policy: every {policy['read_data_max_age_days']} days)", **fig)
    return _check(["VER-CHECKSUM", "ENC-TEST"], GREEN, f"{fig['mode']} verify ok {_age_text(age)} ago", **fig)


def rule_chain(row: dict[str, Any] | None, last_seq: int, events: int, breaks: list[dict[str, Any]]) -> dict[str, Any]:
    accepted = sum(1 for b in breaks if b.get("accepted_at"))
    fig = {
        "chain_status": (row or {}).get("chain_status", "unknown"),
        "last_seq": last_seq,
        "events": events,
        "accepted_breaks": accepted,
        "error": (row or {}).get("chain_error"),
        "broken_since": (row or {}).get("chain_broken_at"),
    }
    if fig["chain_status"] == "broken":
        return _check(["AUD-LOG"], RED, fig["error"] or "audit chain broken", **fig)
    if fig["chain_status"] == "ok":
        note = f"; {accepted} accepted break(s)" if accepted else ""
        return _check(["AUD-LOG"], GREEN, f"chain intact to seq {last_seq}{note}", **fig)
    return _check(["AUD-LOG"], AMBER, "chain not checked yet", **fig)


def rule_failures(
    count: int,
    items: list[dict[str, Any]],
    last_attempt: dict[str, Any] | None,
    first_open_failure: dict[str, Any] | None,
    policy: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """MON-DAILY: failures in the window; MON-ESCALATE: a backup outage older than the limit.

    ``first_open_failure`` is the first failed backup after the last good one,
    i.e. when the current outage began (it may be older than the window).
    """
    denied = sum(1 for e in items if e.get("status") == "denied")
    fig: dict[str, Any] = {
        "window_hours": policy["failure_window_hours"],
        "count": count,
        "denied": denied,
        "items": [
            {
                "seq": e.get("seq"),
                "ts": e.get("ts"),
                "action": e.get("action"),
                "status": e.get("status"),
                "type": _details(e).get("type"),
                "error": _first_error(e),
            }
            for e in items[:10]
        ],
    }
    if last_attempt and last_attempt.get("status") == "failure":
        began = _event_time(first_open_failure or last_attempt, "end")
        open_hours = _hours(now - began) if began else 0.0
        fig["open_failure_hours"] = open_hours
        text = "last backup failed: " + (_first_error(last_attempt) or f"see audit event seq {last_attempt.get('seq')}")
        if open_hours > policy["escalate_after_hours"]:
            return _check(["AUD-LOG", "MON-ESCALATE"], RED, f"{text} — unresolved for {_age_text(open_hours)}, escalate", **fig)
        return _check(["AUD-LOG", "MON-DAILY"], RED, text, **fig)
    if denied:
        return _check(["AUD-MON", "AUD-LOG"], AMBER, f"{denied} denied attempt(s) in {policy['failure_window_hours']} h", **fig)
    if count:
        return _check(["AUD-LOG", "MON-DAILY"], AMBER, f"{count} failed/partial event(s) in {policy['failure_window_hours']} h", **fig)
    return _check(["AUD-LOG", "MON-DAILY"], GREEN, f"none in {policy['failure_window_hours']} h", **fig)


def _first_error(event: dict[str, Any]) -> str | None:
    errors = event.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        if isinstance(first, dict):
            where = first.get("path") or (f"target {first['target']}" if first.get("target") else None)
            err = first.get("error") or first.get("message")
            return f"{where}: {err}" if where else str(err)
        return str(first)
    message = _details(event).get("message")
    return str(message) if message else None


def rule_collection(row: dict[str, Any] | None, policy: dict[str, Any], now: datetime) -> dict[str, Any]:
    last = parse_ts((row or {}).get("last_collect"))
    if last is None:
        return _check(["MON-DAILY"], RED, "never collected", last_collect=None, age_hours=None)
    age = _hours(now - last)
    fig = {"last_collect": iso(last), "age_hours": age}
    if age > policy["collect_max_age_hours"]:
        return _check(["MON-DAILY"], AMBER, f"store data is stale: last collected {_age_text(age)} ago", **fig)
    return _check(["MON-DAILY"], GREEN, f"collected {_age_text(max(age, 0.0))} ago", **fig)


def rule_last_run(failure: dict[str, Any] | None, row: dict[str, Any] | None) -> dict[str, Any]:
    """MON-ALERT: the controller's own view of the last run (unreachable, a task failed).

    A failure counts until a later successful collection from the host clears it.
    """
    if failure:
        collected = parse_ts((row or {}).get("last_collect"))
        failed = parse_ts(failure.get("ts"))
        if failed is not None and (collected is None or failed >= collected):
            return _check(["MON-ALERT", "MON-DAILY"], RED, f"last run {iso(failed)}: {failure['reason']}",
                          failed_at=iso(failed), reason=failure["reason"])
    return _check(["MON-ALERT"], GREEN, "last run reached the host")


# --- assembling -------------------------------------------------------------------------


def host_entry(store: Store | None, name: str, policy: dict[str, Any], now: datetime, zone: tzinfo) -> dict[str, Any]:
    """One host's row: every figure with its controls, then the worst status wins."""
    row = store.host_row(name) if store else None
    events = store.event_count(name) if store and row else 0
    last_run = rule_last_run(store.last_run_failure(name) if store and row else None, row)
    if not row or events == 0:
        why = "never collected" if not row or not row.get("last_collect") else "collected, but the host has no audit events yet"
        if row and row.get("chain_status") == "broken":
            why = row.get("chain_error") or why
        reasons = [{"controls": ["MON-DAILY", "AUD-LOG"], "status": RED, "message": f"no data: {why}"}]
        if last_run["status"] != GREEN:
            reasons.insert(0, {"controls": last_run["controls"], "status": RED, "message": last_run["message"]})
        return {
            "name": name,
            "has_data": False,
            "status": RED,
            "reasons": reasons,
            "last_run": last_run,
            "collection": rule_collection(row, policy, now),
        }
    assert store is not None
    # FREQ-FULL / FREQ-INCR: a backup of a subset of the sources (policy_scope false) does not count.
    last_full = store.last_backup(name, "full", policy_scope_only=True)
    last_incr = store.last_backup(name, "incremental", policy_scope_only=True)
    last_any = store.last_backup(name)
    # A "locked" run (another run held the lock) neither fails nor ends an outage.
    last_attempt = store.last_event(name, "backup", exclude_statuses=NOT_FAILURE_STATUSES)
    count, items = store.failures_since(name, now - timedelta(hours=policy["failure_window_hours"]))
    checks = {
        "last_run": last_run,
        "last_full": rule_full(last_full, policy, now),
        "last_incremental": rule_incremental(last_incr, policy, now, zone),
        "verify": rule_verify(store.recent_events(name, "verify", 60), policy, now),
        "audit_chain": rule_chain(row, store.cursor(name).seq, events, store.breaks(name, 20)),
        "failures": rule_failures(count, items, last_attempt, store.first_failure_after(name, "backup", _event_time(last_any, "end") if last_any else None), policy, now),
        "collection": rule_collection(row, policy, now),
    }
    latest = _snapshot_figure(last_any, now)
    checks["last_backup"] = _check(["LOC-ONSITE"], GREEN if latest.get("present") else AMBER, "snapshot on the primary target", **latest)
    history = [
        {"time": e.get("start") or e.get("ts"), "bytes_added": _details(e).get("bytes_added"), "type": _details(e).get("type"), "status": e.get("status")}
        for e in reversed(store.recent_events(name, "backup", 30))
    ]
    order = ("last_run", "audit_chain", "failures", "last_full", "last_incremental", "verify", "collection")
    reasons = [
        {"controls": checks[k]["controls"], "status": checks[k]["status"], "message": checks[k]["message"]}
        for k in order
        if checks[k]["status"] != GREEN
    ]
    status = max((checks[k]["status"] for k in order), key=_RANK.__getitem__)
    return {
        "name": name,
        "has_data": True,
        "agent_host": row.get("agent_host"),
        "status": status,
        "reasons": reasons,
        **checks,
        "history": history,
    }


def build_report(
    store: Store | None,
    hosts: list[str],
    policy: dict[str, Any],
    now: datetime,
    run: dict[str, Any] | None = None,
    store_path: str | None = None,
) -> dict[str, Any]:
    zone = _zone(policy)
    names = list(dict.fromkeys(str(h) for h in hosts))  # keep order, drop duplicates
    entries = [host_entry(store, name, policy, now, zone) for name in names]
    summary = {"hosts": len(entries), GREEN: 0, AMBER: 0, RED: 0}
    for entry in entries:
        summary[entry["status"]] += 1
    since = now - timedelta(days=policy["history_days"])
    daily = store.daily_backup_counts(since, names) if store else {}
    others = [h for h in store.host_names() if h not in set(names)] if store else []
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "generated_at": iso(now),
        "generator": "fleetsafe.backup.fleet_report",
        "store": store_path,
        "store_schema_version": store.schema_version() if store else None,
        "timezone": str(zone),
        "controls": CONTROLS,
        "report_controls": ["MON-DAILY", "CONSOLE"],
        "policy": policy,
        "run": run or {},
        "summary": summary,
        "daily_backups": {"controls": ["FREQ-FULL", "FREQ-INCR"], "days": _daily_series(daily, since, now)},
        "hosts": entries,
        "store_hosts_not_in_report": others,
    }
    report["fingerprint"] = fingerprint(report)
    return report


def _daily_series(daily: dict[str, dict[str, int]], since: datetime, now: datetime) -> list[dict[str, Any]]:
    out = []
    day = since.date() + timedelta(days=1)
    while day <= now.date():
        key = day.isoformat()
        counts = daily.get(key, {})
        out.append(
            {
                "day": key,
                "success": counts.get("success", 0),
                "partial": counts.get("partial", 0),
                "failure": sum(v for k, v in counts.items() if k not in ("success", "partial") + NOT_FAILURE_STATUSES),
            }
        )
        day += timedelta(days=1)
    return out


def fingerprint(report: dict[str, Any]) -> str:
    """What a reader would see change: statuses, reasons' controls, snapshot ids, chain heads.

    Ages and timestamps are left out on purpose so that running the report
    twice on an unchanged store is not a change (idempotence); a status that
    flips because time passed is a change.
    """
    hosts = []
    for h in report["hosts"]:
        hosts.append(
            [
                h["name"],
                h["status"],
                [(r["status"], r["controls"]) for r in h["reasons"]],
                h.get("last_full", {}).get("snapshot_id"),
                h.get("last_incremental", {}).get("snapshot_id"),
                h.get("verify", {}).get("time"),
                h.get("audit_chain", {}).get("last_seq"),
                h.get("failures", {}).get("count"),
            ]
        )
    body = {"policy": report["policy"], "hosts": hosts, "schema": report["schema_version"]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


# --- writing ----------------------------------------------------------------------------


def latest_fingerprint(dest: str) -> str | None:
    try:
        with open(os.path.join(dest, "latest", "fleet.json"), encoding="utf-8") as handle:
            return json.load(handle).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def write_report(dest: str, report: dict[str, Any], html: str) -> str:
    """Write ``<dest>/<stamp>/`` atomically (temp dir + rename) and repoint ``latest``.

    Returns the new directory.  ``latest`` is a relative symlink so the tree
    can be moved or published as a whole; where symlinks are impossible it is
    a copy.
    """
    stamp = report["generated_at"][:19].replace("-", "").replace(":", "") + "Z"
    try:
        os.makedirs(dest, exist_ok=True)
        final = os.path.join(dest, stamp)
        n = 1
        while os.path.exists(final):  # two reports within one second
            final = os.path.join(dest, f"{stamp}-{n}")
            n += 1
        tmp = os.path.join(dest, f".{os.path.basename(final)}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        with open(os.path.join(tmp, "fleet.json"), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=False, ensure_ascii=False, default=str)
            handle.write("\n")
        with open(os.path.join(tmp, "index.html"), "w", encoding="utf-8") as handle:
            handle.write(html)
        os.rename(tmp, final)
        _point_latest(dest, os.path.basename(final))
    except OSError as exc:
        raise ReportError(f"cannot write the report under {dest}: {exc}") from exc
    return final


def _point_latest(dest: str, name: str) -> None:
    latest = os.path.join(dest, "latest")
    tmp = os.path.join(dest, ".latest.tmp")
    if os.path.islink(tmp) or os.path.isfile(tmp):
        os.unlink(tmp)  # left over from an interrupted run
    elif os.path.isdir(tmp):
        shutil.rmtree(tmp)
    try:
        os.symlink(name, tmp)
    except OSError:
        shutil.copytree(os.path.join(dest, name), tmp)
    if os.path.isdir(latest) and not os.path.islink(latest):
        shutil.rmtree(latest)  # an earlier copy-mode "latest"; replace cannot overwrite a directory
    os.replace(tmp, latest)
