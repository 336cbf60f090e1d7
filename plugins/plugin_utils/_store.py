# Private to this collection: no compatibility promise, do not import from other collections.
"""The controller's central audit store (AUD-LOG evidence), SQLite edition.

Contract (docs/store.md):

* One SQLite file holds every host's audit events, the per-host cursor (the
  last verified event), the chain status, every detected chain break and a
  record of each collection.  Reports read only this file.
* The file is created mode 0600 (AUD-ACCESS: the events name users and
  paths); SQLite gives its ``-wal``/``-shm`` companions the same mode.
* ``add_events`` only ever stores events that *continue the verified chain*
  from the stored cursor: the first new event must have ``seq = cursor + 1``
  and ``prev = cursor hash``, and every hash is recomputed here.  Nothing
  after a break is stored, and the break (seq, expected, got) is recorded.
  A broken chain stays "broken" until an operator accepts it
  (``accept_break``), which starts a new *epoch* — the events of the old
  epoch are kept untouched as evidence.
* Many Ansible forks write the same file at once: every write is one short
  ``BEGIN IMMEDIATE`` transaction (the cursor is re-read inside it), and the
  connection waits up to ``timeout`` seconds for the lock instead of failing.

The schema is versioned in ``meta.schema_version``; ``SCHEMA_VERSION`` is
what this code writes, and an older file is migrated forward on open.  A
PostgreSQL store (docs/store.md) will implement the same public methods.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from ansible_collections.fleetsafe.backup.plugins.module_utils._audit_read import (
    GENESIS,
    ChainBreak,
    check_chain,
)

SCHEMA_VERSION = 2

#: statuses that count as a failure in the report's window (AUD-LOG: success / partial / failure;
#: AC-LOG: denied; verify: damaged; restore: refused)
FAILURE_STATUSES = ("failure", "partial", "denied", "damaged", "refused")
# A run that found the repository lock taken (exit 4): another run was busy,
# nothing failed.  Not a failure, not in the failed bars of the chart.
NOT_FAILURE_STATUSES = ("locked",)

#: AWX/AAP job variables recorded with each collection when defined (ECOSYSTEM A4)
AWX_KEYS = ("awx_job_id", "awx_job_launch_type", "awx_job_template_name", "awx_schedule_name", "awx_user_name")

_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL)""",
    # chain_status: unknown (never collected) | ok | broken
    """CREATE TABLE IF NOT EXISTS hosts (
        name            TEXT PRIMARY KEY,
        agent_host      TEXT,
        first_seen      TEXT NOT NULL,
        last_collect    TEXT,
        chain_status    TEXT NOT NULL DEFAULT 'unknown',
        chain_error     TEXT,
        chain_broken_at TEXT,
        epoch           INTEGER NOT NULL DEFAULT 0)""",
    # ts/start_ts/end_ts are normalised UTC ("%Y-%m-%dT%H:%M:%S.%fZ") so that
    # string order is time order; event_json keeps the event exactly as hashed.
    """CREATE TABLE IF NOT EXISTS events (
        host         TEXT NOT NULL,
        epoch        INTEGER NOT NULL,
        seq          INTEGER NOT NULL,
        ts           TEXT,
        start_ts     TEXT,
        end_ts       TEXT,
        action       TEXT,
        status       TEXT,
        type         TEXT,
        event_json   TEXT NOT NULL,
        hash         TEXT NOT NULL,
        prev_hash    TEXT NOT NULL,
        collected_at TEXT NOT NULL,
        PRIMARY KEY (host, epoch, seq))""",
    "CREATE INDEX IF NOT EXISTS events_by_action ON events (host, action, ts)",
    "CREATE INDEX IF NOT EXISTS events_by_status ON events (host, status, ts)",
    # hash NULL = "no anchor": the next event is accepted as the start of a new epoch
    """CREATE TABLE IF NOT EXISTS cursors (
        host    TEXT PRIMARY KEY,
        epoch   INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        hash    TEXT,
        updated TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS chain_breaks (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        host            TEXT NOT NULL,
        epoch           INTEGER NOT NULL,
        seq             INTEGER,
        reason          TEXT NOT NULL,
        expected        TEXT,
        got             TEXT,
        detected_at     TEXT NOT NULL,
        last_seen       TEXT NOT NULL,
        accepted_at     TEXT,
        accepted_reason TEXT)""",
    """CREATE TABLE IF NOT EXISTS collections (
        id                    INTEGER PRIMARY KEY AUTOINCREMENT,
        host                  TEXT NOT NULL,
        started               TEXT NOT NULL,
        finished              TEXT NOT NULL,
        events_added          INTEGER NOT NULL,
        last_seq              INTEGER,
        chain_ok              INTEGER NOT NULL,
        error                 TEXT,
        controller            TEXT,
        awx_job_id            TEXT,
        awx_job_launch_type   TEXT,
        awx_job_template_name TEXT,
        awx_schedule_name     TEXT,
        awx_user_name         TEXT)""",
    "CREATE INDEX IF NOT EXISTS collections_by_host ON collections (host, id)",
)

#: migrations[n] brings a version-n file to version n+1
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # v2: why a host failed a run on the controller's side (unreachable, backup task
    # failed) -- facts the host's own audit log cannot hold (MON-ALERT).
    1: (
        """CREATE TABLE IF NOT EXISTS run_failures (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            host       TEXT NOT NULL,
            ts         TEXT NOT NULL,
            reason     TEXT NOT NULL,
            controller TEXT,
            awx_job_id TEXT)""",
        "CREATE INDEX IF NOT EXISTS run_failures_by_host ON run_failures (host, id)",
    ),
}


class StoreError(Exception):
    """The store cannot be used (unreadable, newer schema, not a database)."""


@dataclass(frozen=True)
class Cursor:
    """The last verified event of a host: collection resumes after ``seq``.

    ``hash is None`` means no anchor (a new epoch after an accepted break):
    the next event starts the chain and only later events are linked to it.
    """

    epoch: int
    seq: int
    hash: str | None


@dataclass
class AddResult:
    added: int
    skipped: int
    last_seq: int
    last_hash: str | None
    chain_ok: bool
    error: ChainBreak | None


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """The one timestamp format stored (sortable as text)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: Any) -> datetime | None:
    """An event timestamp as an aware datetime; naive values are taken as UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _norm_ts(value: Any) -> str | None:
    dt = parse_ts(value)
    return iso(dt) if dt else None


def log_breaks(cursor: Cursor, info: dict[str, Any]) -> tuple[ChainBreak | None, bool]:
    """Breaks that only the host-side view of the whole log can reveal.

    ``info`` is the first batch returned by the ``audit_collect`` module
    (``log_last_seq``, ``anchor_hash``, ``log_chain_ok``/``log_chain_error``).
    Returns ``(break, may_add_events)``: for a log that was reset or
    rewritten behind the cursor the new events cannot be trusted either, but
    an event edited *before* the cursor (already safely in the store) does
    not stop us from taking the new events that continue our own chain.
    """
    head = info.get("head") if isinstance(info.get("head"), dict) and info["head"].get("seq") is not None else None
    last = info.get("log_last_seq") if info.get("log_present") else None
    if head and last is not None:
        if head["seq"] > last:
            return ChainBreak(last + 1, "tail of the host log cut off (the agent's head file records later events)", f"seq {head['seq']}", f"log ends at {last}"), True
        if head["seq"] == last and head["hash"] != info.get("log_last_hash"):
            return ChainBreak(last, "last event of the host log differs from the agent's head file (rewritten)", head["hash"], info.get("log_last_hash")), False
    if cursor.hash is None or cursor.seq == 0:
        return None, True
    if last is None:
        # No events in the file: legitimate right after logrotate moved it away,
        # provided the agent's head file says nothing was appended since our cursor.
        if head and head["seq"] == cursor.seq and head["hash"] == cursor.hash:
            return None, True
        if head and head["seq"] > cursor.seq:
            return ChainBreak(cursor.seq + 1, "events after the cursor were rotated away or deleted before collection", f"seq {cursor.seq + 1}..{head['seq']}", "none in the log"), False
        what = "missing" if not info.get("log_present") else "empty"
        return ChainBreak(cursor.seq, f"audit log is {what} on the host, but the store already holds events", f">= {cursor.seq} events", what), False
    if last < cursor.seq:
        return ChainBreak(cursor.seq, "host log ends before the stored cursor (log reset or truncated)", f">= {cursor.seq}", last), False
    anchor = info.get("anchor_hash")
    if anchor is not None and anchor != cursor.hash:
        return ChainBreak(cursor.seq, "event on the host differs from the collected copy (history rewritten)", cursor.hash, anchor), False
    err = info.get("log_chain_error")
    if err and err.get("seq") is not None and err["seq"] <= cursor.seq:
        return ChainBreak(err["seq"], "host log altered after collection: {}".format(err.get("reason")), err.get("expected"), err.get("got")), True
    return None, True


class Store:
    """One open SQLite store.  Use as a context manager; one per process/fork."""

    def __init__(self, path: str, *, create: bool = True, timeout: float = 60.0) -> None:
        self.path = path
        if not os.path.exists(path):
            if not create:
                raise StoreError(f"store {path} does not exist (no audit events were collected yet)")
            _create_private_file(path)
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so the
            # write lock is taken before the cursor is read (no lost updates).
            self._conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._timeout = timeout
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(f"store {path} is not usable: {exc}") from exc

    # --- plumbing ------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; the lock is held from the first read."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                # busy_timeout covers most waits; WAL recovery can still report
                # "locked" immediately, so retry until our own deadline.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"store {self.path} is busy: {exc}") from exc
                time.sleep(0.05)
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    def _init_schema(self) -> None:
        # WAL lets the report read while forks write; it needs a local filesystem.
        self._conn.execute("PRAGMA journal_mode = WAL")
        with self._write() as conn:
            conn.execute(_SCHEMA_V1[0])
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row["value"]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {version}; this collection understands"
                    f" up to {SCHEMA_VERSION} (upgrade fleetsafe.backup)"
                )
            if version == 0:
                for statement in _SCHEMA_V1[1:]:
                    conn.execute(statement)
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
                conn.execute("INSERT INTO meta (key, value) VALUES ('created', ?)", (iso(utc_now()),))
                version = 1
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    def schema_version(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row["value"])

    # --- cursors and events ----------------------------------------------------------

    def cursor(self, host: str) -> Cursor:
        return self._cursor(self._conn, host)

    @staticmethod
    def _cursor(conn: sqlite3.Connection, host: str) -> Cursor:
        row = conn.execute("SELECT epoch, seq, hash FROM cursors WHERE host = ?", (host,)).fetchone()
        if row is None:
            return Cursor(0, 0, GENESIS)
        return Cursor(row["epoch"], row["seq"], row["hash"])

    @staticmethod
    def _ensure_host(conn: sqlite3.Connection, host: str, now: str) -> None:
        conn.execute("INSERT OR IGNORE INTO hosts (name, first_seen) VALUES (?, ?)", (host, now))

    def add_events(self, host: str, events: list[dict[str, Any]], *, now: datetime | None = None) -> AddResult:
        """Store the events that continue ``host``'s verified chain; record a break otherwise.

        Events at or below the cursor that are byte-identical to the stored
        copy are skipped (re-delivery is harmless: a re-collect adds 0); one
        that differs from the stored copy is a break (history rewritten).
        """
        stamp = iso(now or utc_now())
        with self._write() as conn:
            self._ensure_host(conn, host, stamp)
            cur = self._cursor(conn, host)
            skipped = 0
            brk: ChainBreak | None = None
            if cur.hash is not None:
                while skipped < len(events):
                    event = events[skipped]
                    seq = event.get("seq") if isinstance(event, dict) else None
                    if not isinstance(seq, int) or seq > cur.seq:
                        break
                    row = conn.execute(
                        "SELECT hash FROM events WHERE host = ? AND epoch = ? AND seq = ?", (host, cur.epoch, seq)
                    ).fetchone()
                    if row is None or row["hash"] != event.get("hash"):
                        brk = ChainBreak(seq, "event differs from the collected copy (history rewritten)", row["hash"] if row else None, event.get("hash"))
                        break
                    skipped += 1
            fresh = events[skipped:] if brk is None else []
            check = check_chain(fresh, None if cur.hash is None else cur.seq, cur.hash)
            good = fresh[: check["good"]]
            for event in good:
                raw_details = event.get("details")
                details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
                conn.execute(
                    "INSERT INTO events (host, epoch, seq, ts, start_ts, end_ts, action, status, type, event_json,"
                    " hash, prev_hash, collected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        host,
                        cur.epoch,
                        event["seq"],
                        _norm_ts(event.get("ts")),
                        _norm_ts(event.get("start")),
                        _norm_ts(event.get("end")),
                        _text(event.get("action")),
                        _text(event.get("status")),
                        _text(details.get("type")),
                        json.dumps(event, sort_keys=True, ensure_ascii=False),
                        event["hash"],
                        event["prev"],
                        stamp,
                    ),
                )
            if good:
                conn.execute(
                    "INSERT INTO cursors (host, epoch, seq, hash, updated) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (host) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq,"
                    " hash = excluded.hash, updated = excluded.updated",
                    (host, cur.epoch, check["last_seq"], check["last_hash"], stamp),
                )
                agent_host = good[-1].get("host")
                if isinstance(agent_host, str):
                    conn.execute("UPDATE hosts SET agent_host = ? WHERE name = ?", (agent_host, host))
            brk = brk or check["break"]
            if brk is not None:
                self._record_break(conn, host, cur.epoch, brk, stamp)
            else:
                conn.execute("UPDATE hosts SET chain_status = 'ok' WHERE name = ? AND chain_status = 'unknown'", (host,))
            return AddResult(
                added=len(good),
                skipped=skipped,
                last_seq=check["last_seq"] if check["last_seq"] is not None else cur.seq,
                last_hash=check["last_hash"],
                chain_ok=brk is None,
                error=brk,
            )

    def record_break(self, host: str, brk: ChainBreak, *, now: datetime | None = None) -> None:
        stamp = iso(now or utc_now())
        with self._write() as conn:
            self._ensure_host(conn, host, stamp)
            self._record_break(conn, host, self._cursor(conn, host).epoch, brk, stamp)

    @staticmethod
    def _record_break(conn: sqlite3.Connection, host: str, epoch: int, brk: ChainBreak, stamp: str) -> None:
        """Mark the host broken and log the break once (a recurring one only bumps last_seen)."""
        same = conn.execute(
            "SELECT id FROM chain_breaks WHERE host = ? AND epoch = ? AND accepted_at IS NULL"
            " AND seq IS ? AND reason = ? ORDER BY id DESC LIMIT 1",
            (host, epoch, brk.seq, brk.reason),
        ).fetchone()
        if same:
            conn.execute("UPDATE chain_breaks SET last_seen = ? WHERE id = ?", (stamp, same["id"]))
        else:
            conn.execute(
                "INSERT INTO chain_breaks (host, epoch, seq, reason, expected, got, detected_at, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (host, epoch, brk.seq, brk.reason, _text(brk.expected), _text(brk.got), stamp, stamp),
            )
        # The first break's message stays: later ones are usually its consequences.
        conn.execute(
            "UPDATE hosts SET chain_error = CASE WHEN chain_status = 'broken' THEN chain_error ELSE ? END,"
            " chain_broken_at = CASE WHEN chain_status = 'broken' THEN chain_broken_at ELSE ? END,"
            " chain_status = 'broken' WHERE name = ?",
            (brk.message(), stamp, host),
        )

    def accept_break(self, host: str, reason: str, *, now: datetime | None = None) -> Cursor | None:
        """An operator accepts a broken chain: start a new epoch with no anchor.

        The old epoch's events and the break records stay as evidence; the
        next collection re-reads the host's log from the start and trusts its
        first event as the new anchor.  Returns the new cursor, or None when
        the chain was not broken (nothing to accept).
        """
        stamp = iso(now or utc_now())
        with self._write() as conn:
            row = conn.execute("SELECT chain_status, epoch FROM hosts WHERE name = ?", (host,)).fetchone()
            if row is None or row["chain_status"] != "broken":
                return None
            epoch = self._cursor(conn, host).epoch + 1
            conn.execute(
                "UPDATE chain_breaks SET accepted_at = ?, accepted_reason = ? WHERE host = ? AND accepted_at IS NULL",
                (stamp, reason, host),
            )
            conn.execute(
                "UPDATE hosts SET chain_status = 'ok', chain_error = NULL, chain_broken_at = NULL, epoch = ? WHERE name = ?",
                (epoch, host),
            )
            conn.execute(
                "INSERT INTO cursors (host, epoch, seq, hash, updated) VALUES (?, ?, 0, NULL, ?)"
                " ON CONFLICT (host) DO UPDATE SET epoch = excluded.epoch, seq = 0, hash = NULL, updated = excluded.updated",
                (host, epoch, stamp),
            )
            return Cursor(epoch, 0, None)

    def record_collection(
        self,
        host: str,
        *,
        started: datetime,
        finished: datetime,
        events_added: int,
        last_seq: int | None,
        chain_ok: bool,
        error: str | None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """One row per collection run of one host (last collect time, AWX job, outcome)."""
        meta = metadata or {}
        stamp = iso(finished)
        with self._write() as conn:
            self._ensure_host(conn, host, stamp)
            conn.execute(
                "INSERT INTO collections (host, started, finished, events_added, last_seq, chain_ok, error, controller,"
                " awx_job_id, awx_job_launch_type, awx_job_template_name, awx_schedule_name, awx_user_name)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (host, iso(started), stamp, events_added, last_seq, int(chain_ok), error, _text(meta.get("controller")))
                + tuple(_text(meta.get(key)) for key in AWX_KEYS),
            )
            conn.execute("UPDATE hosts SET last_collect = ? WHERE name = ?", (stamp, host))

    def record_run_failure(self, host: str, reason: str, *, now: datetime | None = None, metadata: dict[str, Any] | None = None) -> None:
        """The controller saw ``host`` fail this run (unreachable, a task failed): MON-ALERT evidence.

        Kept apart from ``collections``: the host was not collected, so its
        ``last_collect`` must not move.
        """
        meta = metadata or {}
        stamp = iso(now or utc_now())
        with self._write() as conn:
            self._ensure_host(conn, host, stamp)
            conn.execute(
                "INSERT INTO run_failures (host, ts, reason, controller, awx_job_id) VALUES (?, ?, ?, ?, ?)",
                (host, stamp, reason, _text(meta.get("controller")), _text(meta.get("awx_job_id"))),
            )

    # --- queries for reports -------------------------------------------------------------

    def last_run_failure(self, host: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM run_failures WHERE host = ? ORDER BY id DESC LIMIT 1", (host,)).fetchone()
        return dict(row) if row else None

    def host_names(self) -> list[str]:
        return [row["name"] for row in self._conn.execute("SELECT name FROM hosts ORDER BY name")]

    def host_row(self, host: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM hosts WHERE name = ?", (host,)).fetchone()
        return dict(row) if row else None

    def event_count(self, host: str) -> int:
        return int(self._conn.execute("SELECT count(DISTINCT hash) FROM events WHERE host = ?", (host,)).fetchone()[0])

    def _events(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [json.loads(row["event_json"]) for row in self._conn.execute(sql, args)]

    def last_backup(
        self,
        host: str,
        backup_type: str | None = None,
        statuses: tuple[str, ...] = ("success", "partial"),
        policy_scope_only: bool = False,
    ) -> dict[str, Any] | None:
        """Latest backup event (by start time) of a type with one of ``statuses``.

        ``policy_scope_only`` skips backups of a subset of the sources
        (``details.policy_scope`` false, e.g. ``--source``); events without the
        key (older agents) count as covering the configured sources.
        """
        sql = "SELECT event_json FROM events WHERE host = ? AND action = 'backup'"
        args: list[Any] = [host]
        if policy_scope_only:
            # JSON false reads as 0, a missing key as NULL (= in scope).
            sql += " AND coalesce(json_extract(event_json, '$.details.policy_scope'), 1) IS NOT 0"
        if backup_type:
            sql += " AND type = ?"
            args.append(backup_type)
        if statuses:
            sql += " AND status IN ({})".format(",".join("?" * len(statuses)))
            args.extend(statuses)
        sql += " ORDER BY COALESCE(start_ts, ts) DESC, epoch DESC, seq DESC LIMIT 1"
        found = self._events(sql, tuple(args))
        return found[0] if found else None

    def last_event(self, host: str, action: str, exclude_statuses: tuple[str, ...] = ()) -> dict[str, Any] | None:
        sql = "SELECT event_json FROM events WHERE host = ? AND action = ?"
        args: tuple[Any, ...] = (host, action)
        if exclude_statuses:
            sql += " AND coalesce(status, '') NOT IN ({})".format(",".join("?" * len(exclude_statuses)))
            args += tuple(exclude_statuses)
        found = self._events(sql + " ORDER BY ts DESC, epoch DESC, seq DESC LIMIT 1", args)
        return found[0] if found else None

    def first_failure_after(self, host: str, action: str, after: datetime | None) -> dict[str, Any] | None:
        """The first ``failure`` of ``action`` after ``after`` (when an outage began)."""
        found = self._events(
            "SELECT event_json FROM events WHERE host = ? AND action = ? AND status = 'failure' AND ts > ?"
            " ORDER BY ts ASC, seq ASC LIMIT 1",
            (host, action, iso(after) if after else ""),
        )
        return found[0] if found else None

    def recent_events(self, host: str, action: str, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, one copy per event (an accepted break may re-import events into a new epoch)."""
        return self._events(
            "SELECT event_json FROM events WHERE host = ? AND action = ? GROUP BY hash"
            " ORDER BY max(ts) DESC, max(seq) DESC LIMIT ?",
            (host, action, limit),
        )

    def failures_since(self, host: str, since: datetime, limit: int = 20) -> tuple[int, list[dict[str, Any]]]:
        """(count, newest events) with a failure-like status at or after ``since``."""
        marks = ",".join("?" * len(FAILURE_STATUSES))
        args = (host, *FAILURE_STATUSES, iso(since))
        where = f"WHERE host = ? AND status IN ({marks}) AND ts >= ?"
        count = self._conn.execute("SELECT count(DISTINCT hash) FROM events " + where, args).fetchone()[0]
        items = self._events(
            "SELECT event_json FROM events " + where + " GROUP BY hash ORDER BY max(ts) DESC LIMIT ?", args + (limit,)
        )
        return int(count), items

    def daily_backup_counts(self, since: datetime, hosts: list[str] | None = None) -> dict[str, dict[str, int]]:
        """``{"YYYY-MM-DD": {status: n}}`` of backup events (UTC days) for the chart."""
        sql = (
            "SELECT substr(ts, 1, 10) AS day, status, count(DISTINCT hash) AS n FROM events"
            " WHERE action = 'backup' AND ts >= ?"
        )
        args: list[Any] = [iso(since)]
        if hosts is not None:
            sql += " AND host IN ({})".format(",".join("?" * len(hosts))) if hosts else " AND 0"
            args.extend(hosts)
        sql += " GROUP BY day, status"
        out: dict[str, dict[str, int]] = {}
        for row in self._conn.execute(sql, tuple(args)):
            out.setdefault(row["day"], {})[row["status"] or "unknown"] = int(row["n"])
        return out

    def breaks(self, host: str, limit: int = 5) -> list[dict[str, Any]]:
        return [
            dict(row)
            for row in self._conn.execute("SELECT * FROM chain_breaks WHERE host = ? ORDER BY id DESC LIMIT ?", (host, limit))
        ]

    def last_collection(self, host: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM collections WHERE host = ? ORDER BY id DESC LIMIT 1", (host,)).fetchone()
        return dict(row) if row else None

    def data_version(self) -> tuple[int, int, int]:
        """Changes whenever events, breaks or hosts change (the report's change detection)."""
        row = self._conn.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT coalesce(max(id), 0) FROM chain_breaks), (SELECT count(*) FROM hosts)"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])


def resolve_controller_path(path: str, relative_to: str, task_vars: dict[str, Any]) -> str:
    """Absolute controller path for a store/report option (docs/store.md, "Where the store lives")."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    base = None
    if relative_to == "inventory":
        for source in task_vars.get("ansible_inventory_sources") or []:
            # "host1,host2," style sources are not paths; skip them
            if isinstance(source, str) and os.path.exists(source):
                source = os.path.abspath(source)
                base = source if os.path.isdir(source) else os.path.dirname(source)
                break
    if base is None and relative_to in ("inventory", "playbook"):
        base = task_vars.get("playbook_dir")
    return os.path.abspath(os.path.join(base or os.getcwd(), path))


def run_metadata(task_vars: dict[str, Any]) -> dict[str, Any]:
    """Who ran this: the controller and, under AWX/AAP, the job (ECOSYSTEM A4)."""
    meta: dict[str, Any] = {"controller": socket.gethostname()}
    for key in AWX_KEYS:
        value = task_vars.get(key)
        if value not in (None, ""):
            meta[key] = str(value)
    return meta


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _create_private_file(path: str) -> None:
    """Create the store file 0600 (and its directory 0700) without a window where it is wider."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return  # another fork created it first: fine, it did so the same way
    except OSError as exc:
        raise StoreError(f"cannot create store {path}: {exc}") from exc
    os.close(fd)
