"""Test helper: write valid audit chains exactly as docs/cli.md specifies.

Deliberately independent of both the agent and plugins/module_utils: if the
collection's hash code drifted from the documented rule, tests built on
this helper would catch it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

GENESIS = "0" * 64


def seal(event: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in event.items() if k != "hash"}
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return {**body, "hash": hashlib.sha256(data).hexdigest()}


def ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(
    seq: int,
    prev: str,
    *,
    at: datetime,
    action: str = "backup",
    status: str = "success",
    host: str = "web1",
    details: dict[str, Any] | None = None,
    duration: float = 4.0,
) -> dict[str, Any]:
    start = at - timedelta(seconds=duration)
    return seal(
        {
            "v": 1,
            "seq": seq,
            "ts": ts(at),
            "host": host,
            "actor": {"user": "root", "uid": 0, "via": "timer"},
            "action": action,
            "status": status,
            "start": ts(start),
            "end": ts(at),
            "data_sets": ["/etc"],
            "details": details or {},
            "errors": [] if status == "success" else [{"path": "/x", "error": "boom"}],
            "prev": prev,
        }
    )


class Chain:
    """Builds a chain event by event; ``events`` is the log in order."""

    def __init__(self, host: str = "web1") -> None:
        self.host = host
        self.events: list[dict[str, Any]] = []

    @property
    def head(self) -> str:
        return self.events[-1]["hash"] if self.events else GENESIS

    def add(self, action: str = "backup", *, at: datetime, status: str = "success", **details: Any) -> dict[str, Any]:
        duration = float(details.pop("duration_seconds", 4.0))
        if action == "backup":
            details.setdefault("type", "incremental")
            details.setdefault("snapshot_id", "%064x" % (len(self.events) + 1))
            details.setdefault("bytes_added", 4096 * (len(self.events) + 1))
            details["duration_seconds"] = duration
        ev = event(len(self.events) + 1, self.head, at=at, action=action, status=status, host=self.host, details=details, duration=duration)
        self.events.append(ev)
        return ev

    def lines(self) -> str:
        return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.events)

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.lines())


def healthy_day(chain: Chain, now: datetime) -> None:
    """A host that meets the default policy at ``now``: a full two days ago,
    hourly incrementals 08:00–20:00 UTC up to ``now``, a structural verify
    today and a read-data verify this week."""
    chain.add(at=now - timedelta(days=2), type="full", bytes_added=10_000_000, duration_seconds=600)
    chain.add("verify", at=now - timedelta(days=2) + timedelta(hours=1), status="success", result="ok", read_data=True, problems=[])
    day = now.replace(hour=8, minute=0, second=5, microsecond=0)
    hour = day
    while hour <= now and hour.hour <= 20:
        chain.add(at=hour, type="incremental")
        if hour == day and hour + timedelta(minutes=30) <= now:
            chain.add("verify", at=day + timedelta(minutes=30), status="success", result="ok", read_data=False, problems=[])
        hour += timedelta(hours=1)
