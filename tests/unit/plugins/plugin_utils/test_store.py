"""Central store: chain continuation, tamper evidence (AUD-LOG), cursors, concurrency."""

from __future__ import annotations

import copy
import multiprocessing
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.fleetsafe.backup.plugins.module_utils._audit_read import (
    GENESIS,
    read_batch,
)
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._store import (
    SCHEMA_VERSION,
    Cursor,
    Store,
    StoreError,
    log_breaks,
)
from ansible_collections.fleetsafe.backup.tests.unit.plugins.plugin_utils.audit_chain import (
    Chain,
    seal,
)

T0 = datetime(2026, 12, 3, 8, 0, 5, tzinfo=UTC)


def chain_of(n: int, host: str = "web1", start: datetime = T0) -> Chain:
    chain = Chain(host)
    for i in range(n):
        chain.add(at=start + timedelta(hours=i), type="full" if i == 0 else "incremental")
    return chain


@pytest.fixture
def store(tmp_path):
    with Store(str(tmp_path / "state" / "fleetsafe.db")) as s:
        yield s


def test_created_private_with_schema_version(tmp_path):
    path = tmp_path / "state" / "fleetsafe.db"
    with Store(str(path)) as s:
        assert s.schema_version() == SCHEMA_VERSION
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_refuses_newer_schema(tmp_path):
    path = str(tmp_path / "s.db")
    with Store(path) as s:
        s._conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)


def test_version_1_file_is_migrated_and_keeps_its_events(tmp_path):
    path = str(tmp_path / "s.db")
    with Store(path) as s:
        s.add_events("web1", chain_of(3).events)
        # make it look like a file written by schema version 1
        s._conn.execute("DROP TABLE run_failures")
        s._conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION == 2
        assert s.event_count("web1") == 3
        s.record_run_failure("web1", "unreachable")
        assert s.last_run_failure("web1")["reason"] == "unreachable"


def test_missing_store_not_created_for_reading(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(str(tmp_path / "nope.db"), create=False)
    assert not (tmp_path / "nope.db").exists()


def test_chain_continues_across_batches_and_cursor_resumes(store):
    chain = chain_of(10)
    first = store.add_events("web1", chain.events[:4])
    assert (first.added, first.chain_ok, first.last_seq) == (4, True, 4)
    assert store.cursor("web1") == Cursor(0, 4, chain.events[3]["hash"])
    second = store.add_events("web1", chain.events[4:])
    assert (second.added, second.chain_ok, second.last_seq) == (6, True, 10)
    assert store.host_row("web1")["chain_status"] == "ok"
    assert store.event_count("web1") == 10


def test_recollect_is_idempotent(store):
    chain = chain_of(5)
    store.add_events("web1", chain.events)
    again = store.add_events("web1", chain.events)
    assert (again.added, again.skipped, again.chain_ok) == (0, 5, True)
    assert store.event_count("web1") == 5


def test_hosts_are_independent(store):
    store.add_events("web1", chain_of(3, "web1").events)
    store.add_events("db1", chain_of(2, "db1").events)
    assert store.cursor("web1").seq == 3 and store.cursor("db1").seq == 2
    assert store.host_names() == ["db1", "web1"]


def test_edited_line_is_detected_and_nothing_after_is_stored(store):
    chain = chain_of(6)
    events = copy.deepcopy(chain.events)
    events[3]["details"]["bytes_added"] = 1  # edited after the fact, hash left as it was
    result = store.add_events("web1", events)
    assert not result.chain_ok
    assert result.added == 3 and store.cursor("web1").seq == 3
    assert result.error.seq == 4 and "edited" in result.error.reason
    row = store.host_row("web1")
    assert row["chain_status"] == "broken" and "seq 4" in row["chain_error"]
    assert store.event_count("web1") == 3


def test_edited_line_with_recomputed_hash_breaks_the_next_link(store):
    chain = chain_of(6)
    events = copy.deepcopy(chain.events)
    events[3]["status"] = "success"
    events[3]["details"]["bytes_added"] = 1
    events[3] = seal(events[3])  # a careful forger recomputes the hash ...
    result = store.add_events("web1", events)
    # ... but event 5 still points at the original event 4
    assert not result.chain_ok and result.error.seq == 5 and "prev" in result.error.reason
    assert result.error.expected == events[3]["hash"] and result.error.got == chain.events[3]["hash"]
    assert result.added == 4


def test_removed_line_is_detected(store):
    events = chain_of(6).events
    result = store.add_events("web1", events[:2] + events[3:])
    assert not result.chain_ok and result.added == 2
    assert result.error.seq == 3 and (result.error.expected, result.error.got) == (3, 4)
    assert "missing" in result.error.reason


def test_reordered_lines_are_detected(store):
    events = chain_of(6).events
    result = store.add_events("web1", [events[0], events[2], events[1]] + events[3:])
    assert not result.chain_ok and result.added == 1 and result.error.seq == 2


def test_batch_that_does_not_continue_the_cursor_is_a_break(store):
    events = chain_of(6).events
    store.add_events("web1", events[:3])
    result = store.add_events("web1", events[4:])  # seq 4 never delivered
    assert not result.chain_ok and result.error.expected == 4 and result.error.got == 5


def test_truncated_then_regrown_log_is_detected(store):
    original = chain_of(6)
    store.add_events("web1", original.events)
    # The log is cut back to 3 events and grows again with different content.
    regrown = Chain("web1")
    for ev in original.events[:3]:
        regrown.events.append(ev)
    for i in range(5):
        regrown.add(at=T0 + timedelta(days=1, hours=i), type="incremental")
    result = store.add_events("web1", regrown.events)
    assert not result.chain_ok and result.added == 0
    assert result.error.seq == 4 and "differs from the collected copy" in result.error.reason
    # and as the module would deliver it (only seq > cursor): prev of seq 7 does not match
    result = store.add_events("web1", regrown.events[6:])
    assert not result.chain_ok and result.error.seq == 7 and "prev" in result.error.reason
    assert store.cursor("web1").seq == 6


def test_reset_log_seq_restarts(store):
    store.add_events("web1", chain_of(6).events)
    result = store.add_events("web1", chain_of(2, start=T0 + timedelta(days=3)).events)
    assert not result.chain_ok and "differs" in result.error.reason
    assert store.host_row("web1")["chain_status"] == "broken"


def test_break_is_sticky_recorded_once_and_can_be_accepted(store):
    store.add_events("web1", chain_of(6).events)
    reset = chain_of(4, start=T0 + timedelta(days=3)).events  # log recreated, seq restarts at 1
    store.add_events("web1", reset)
    store.add_events("web1", reset)  # the same break seen again on the next run
    breaks = store.breaks("web1")
    assert len(breaks) == 1 and breaks[0]["seq"] == 1 and breaks[0]["accepted_at"] is None
    assert store.accept_break("web1", "ticket 42: log recreated after disk replacement") == Cursor(1, 0, None)
    assert store.host_row("web1")["chain_status"] == "ok"
    # New epoch: the host's current log is taken as the new anchor, old events stay as evidence.
    result = store.add_events("web1", reset)
    assert result.chain_ok and result.added == 4
    assert store.event_count("web1") == 10
    assert store.breaks("web1")[0]["accepted_reason"].startswith("ticket 42")
    assert store.accept_break("web1", "nothing broken") is None


def test_log_breaks_from_host_view():
    cur = Cursor(0, 5, "a" * 64)
    assert log_breaks(Cursor(0, 0, GENESIS), {"log_present": False}) == (None, True)
    brk, go_on = log_breaks(cur, {"log_present": True, "log_last_seq": 2, "log_chain_ok": True})
    assert not go_on and "ends before" in brk.reason and brk.got == 2
    brk, go_on = log_breaks(cur, {"log_present": True, "log_last_seq": 9, "anchor_hash": "b" * 64, "log_chain_ok": True})
    assert not go_on and "rewritten" in brk.reason
    brk, go_on = log_breaks(
        cur,
        {"log_present": True, "log_last_seq": 9, "anchor_hash": "a" * 64, "log_chain_ok": False, "log_chain_error": {"seq": 3, "reason": "edited"}},
    )
    assert go_on and brk.seq == 3 and "altered after collection" in brk.reason
    assert log_breaks(cur, {"log_present": True, "log_last_seq": 9, "anchor_hash": "a" * 64, "log_chain_ok": True}) == (None, True)
    brk, _ = log_breaks(cur, {"log_present": False})
    assert "missing" in brk.reason


def test_log_breaks_with_the_agents_head_file():
    cur = Cursor(0, 5, "a" * 64)
    head = {"seq": 5, "hash": "a" * 64}
    # rotated: the new file is empty or absent, the head file says nothing new happened
    assert log_breaks(cur, {"log_present": True, "log_last_seq": None, "head": head}) == (None, True)
    assert log_breaks(cur, {"log_present": False, "head": head}) == (None, True)
    brk, go_on = log_breaks(cur, {"log_present": False, "head": {"seq": 8, "hash": "b" * 64}})
    assert not go_on and "rotated away" in brk.reason and brk.seq == 6
    brk, go_on = log_breaks(cur, {"log_present": True, "log_last_seq": 7, "log_last_hash": "c" * 64, "anchor_hash": "a" * 64, "head": {"seq": 9, "hash": "d" * 64}})
    assert go_on and "cut off" in brk.reason and brk.seq == 8
    brk, go_on = log_breaks(cur, {"log_present": True, "log_last_seq": 9, "log_last_hash": "c" * 64, "anchor_hash": "a" * 64, "head": {"seq": 9, "hash": "d" * 64}})
    assert not go_on and "head file" in brk.reason
    # even on a first collection a cut-off tail shows
    brk, _ = log_breaks(Cursor(0, 0, GENESIS), {"log_present": True, "log_last_seq": 3, "log_last_hash": "c" * 64, "head": {"seq": 4, "hash": "d" * 64}})
    assert brk is not None and brk.seq == 4
    # an unreadable head file is ignored (it is a convenience of the agent, not the record)
    assert log_breaks(cur, {"log_present": True, "log_last_seq": 9, "anchor_hash": "a" * 64, "head": {"seq": None, "error": "EACCES"}}) == (None, True)


def test_read_batch_is_bounded_and_resumable(tmp_path):
    chain = chain_of(25)
    log = tmp_path / "audit.jsonl"
    chain.write(str(log))
    first = read_batch(str(log), since=0, max_events=10)
    assert [e["seq"] for e in first["events"]] == list(range(1, 11))
    assert first["more"] and first["log_last_seq"] == 25 and first["log_chain_ok"]
    second = read_batch(str(log), since=10, offset=first["next_offset"], max_events=10, scan=False)
    assert [e["seq"] for e in second["events"]] == list(range(11, 21)) and second["more"]
    third = read_batch(str(log), since=20, offset=second["next_offset"], max_events=10, scan=False)
    assert [e["seq"] for e in third["events"]] == list(range(21, 26)) and not third["more"]
    # max_bytes bounds the batch too, but never below one event
    tiny = read_batch(str(log), since=0, max_bytes=10)
    assert len(tiny["events"]) == 1 and tiny["more"]
    # the anchor is the hash of the event at ``since``
    assert read_batch(str(log), since=7)["anchor_hash"] == chain.events[6]["hash"]


def test_read_batch_ignores_torn_tail_and_skips_torn_lines(tmp_path, store):
    chain = chain_of(5)
    log = tmp_path / "audit.jsonl"
    log.write_text(chain.lines() + '{"seq": 6, "half')
    got = read_batch(str(log), since=0)
    assert [e["seq"] for e in got["events"]] == [1, 2, 3, 4, 5] and got["log_chain_ok"]
    # a torn line the agent terminated, then the chain goes on: nothing is lost
    lines = chain.lines().splitlines(keepends=True)
    log.write_text("".join(lines[:2]) + '{"seq": 3, "torn\n' + "".join(lines[2:]))
    got = read_batch(str(log), since=0)
    assert got["log_chain_ok"] and got["skipped_lines"] == [{"line": 3, "reason": "not valid JSON", "after_seq": 2}]
    assert store.add_events("web1", got["events"]).chain_ok
    # a real event replaced by garbage is a gap, on the host and in the store
    log.write_text("".join(lines[:2]) + "garbage\n" + "".join(lines[3:]))
    got = read_batch(str(log), since=0)
    assert not got["log_chain_ok"] and got["log_chain_error"]["seq"] == 3
    result = Store(str(tmp_path / "other.db")).add_events("web1", got["events"])
    assert not result.chain_ok and result.error.seq == 3 and result.added == 2


def test_read_batch_missing_file(tmp_path):
    got = read_batch(str(tmp_path / "none.jsonl"), since=0)
    assert got["log_present"] is False and got["events"] == []


def _writer(path: str, host: str, n: int) -> None:
    chain = chain_of(n, host)
    with Store(path, timeout=60) as s:
        for i in range(0, n, 3):  # many short transactions, like batches from many forks
            result = s.add_events(host, chain.events[i : i + 3])
            assert result.chain_ok


def test_many_processes_write_one_store(tmp_path):
    path = str(tmp_path / "fleet.db")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, f"host{i:02d}", 30)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(path) as s:
        assert len(s.host_names()) == 8
        assert all(s.cursor(h).seq == 30 and s.host_row(h)["chain_status"] == "ok" for h in s.host_names())


def test_contract_with_the_agents_audit_log(tmp_path, store):
    """Events written by the real agent (fleetsafe.audit) verify on the controller unchanged."""
    audit = pytest.importorskip("fleetsafe.audit")
    log = audit.AuditLog(tmp_path / "audit.jsonl", "web1", head_file=tmp_path / "audit.head")
    log.append("backup", "success", details={"type": "full", "snapshot_id": "ab" * 32, "bytes_added": 10, "duration_seconds": 1.5})
    log.append("verify", "success", details={"result": "ok", "read_data_percent": 5.0, "problems": 0})
    log.append("restore", "denied", details={"reason": "no approval — ünïcode"})
    got = read_batch(str(tmp_path / "audit.jsonl"), since=0)
    assert got["log_chain_ok"] and len(got["events"]) == 3
    result = store.add_events("web1", got["events"])
    assert result.chain_ok and result.added == 3
