"""fleetsafe.audit: hash-chained, append-only audit log (AUD-LOG, AC-LOG, AUD-ACCESS)."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from fleetsafe.audit import GENESIS, AuditLog, canonical, current_actor, event_hash


def _log(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "log" / "audit.jsonl", "web1", head_file=tmp_path / "state" / "audit.head")


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def test_event_format_and_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETSAFE_TRIGGER", "timer")
    monkeypatch.setenv("FLEETSAFE_AWX_JOB_ID", "4711")
    log = _log(tmp_path)
    e1 = log.append("init", "success", details={"repository": "ab"})
    e2 = log.append("backup", "partial", data_sets=["/etc"], errors=[{"path": "/etc/x", "error": "gone"}])
    assert (e1["seq"], e2["seq"]) == (1, 2)
    assert e1["prev"] == GENESIS and e2["prev"] == e1["hash"]
    assert e1["actor"]["via"] == "timer" and e1["actor"]["awx_job_id"] == "4711"
    assert e1["actor"]["uid"] == os.getuid()
    assert set(e1) == {"v", "seq", "ts", "host", "actor", "action", "status", "start", "end", "data_sets", "details", "errors", "prev", "hash"}
    assert e1["ts"].endswith("Z") and e1["host"] == "web1"
    # The line on disk is the canonical form and hashes as docs/cli.md says.
    line = _lines(log)[1]
    obj = json.loads(line)
    assert line.encode() == canonical(obj)
    assert obj["hash"] == event_hash(obj)
    assert log.verify_chain().ok
    assert [e["seq"] for e in log.events(since=1)] == [2]


def test_file_mode_0640(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        log = _log(tmp_path)
        log.append("init", "success")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
def test_created_log_takes_the_group_of_its_directory(tmp_path: Path) -> None:
    # AUD-ACCESS: /var/log/fleetsafe is root:adm 0750; a root:root log in it is unreadable for adm.
    gid = 4242
    logdir = tmp_path / "log"
    logdir.mkdir(mode=0o750)
    os.chown(logdir, 0, gid)
    old = os.umask(0o077)
    try:
        log = AuditLog(logdir / "audit.jsonl", "web1")  # head file next to the log
        log.append("init", "success")
        log.append("backup", "success")
    finally:
        os.umask(old)
    for path in (log.path, log.head_file):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o640), path
    # A log that already exists keeps its owner and group (the agent only sets them on creation).
    os.chown(log.path, 0, 0)
    log.append("verify", "success")
    assert os.stat(log.path).st_gid == 0
    # A head file elsewhere (the CLI keeps it in the 0700 state dir) keeps the default group.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    other = AuditLog(logdir / "other.jsonl", "web1", head_file=state / "audit.head")
    other.append("init", "success")
    assert os.stat(other.path).st_gid == gid and os.stat(state / "audit.head").st_gid == 0
    assert log.verify_chain().ok and other.verify_chain().ok


def test_unknown_trigger_is_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETSAFE_TRIGGER", "evil\nvalue")
    assert current_actor()["via"] == "cli"


def _three(tmp_path: Path) -> AuditLog:
    log = _log(tmp_path)
    for action in ("init", "backup", "verify"):
        log.append(action, "success")
    return log


def test_edit_detected(tmp_path: Path) -> None:
    log = _three(tmp_path)
    lines = _lines(log)
    lines[1] = lines[1].replace('"status":"success"', '"status":"failure"')
    log.path.write_text("\n".join(lines) + "\n")
    rep = log.verify_chain()
    assert not rep.ok and rep.bad_seq == 2 and "edited" in (rep.error or "")


def test_edit_with_rehash_detected(tmp_path: Path) -> None:
    # Recomputing the edited line's own hash does not help: the next prev no longer matches.
    log = _three(tmp_path)
    lines = _lines(log)
    obj = json.loads(lines[1])
    obj["status"] = "failure"
    obj["hash"] = event_hash(obj)
    lines[1] = canonical(obj).decode()
    log.path.write_text("\n".join(lines) + "\n")
    rep = log.verify_chain()
    assert not rep.ok and rep.bad_seq == 3


def test_removed_line_detected(tmp_path: Path) -> None:
    log = _three(tmp_path)
    lines = _lines(log)
    del lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    rep = log.verify_chain()
    assert not rep.ok and rep.bad_seq == 2 and "removed or reordered" in (rep.error or "")


def test_reordered_detected(tmp_path: Path) -> None:
    log = _three(tmp_path)
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    rep = log.verify_chain()
    assert not rep.ok and rep.bad_seq == 2


def test_truncated_tail_detected_by_head(tmp_path: Path) -> None:
    log = _three(tmp_path)
    lines = _lines(log)
    log.path.write_text("\n".join(lines[:2]) + "\n")
    rep = log.verify_chain()
    assert not rep.ok and rep.bad_seq == 3 and "head file" in (rep.error or "")


def test_rotation_continues_chain(tmp_path: Path) -> None:
    log = _three(tmp_path)
    last = json.loads(_lines(log)[-1])
    log.path.rename(log.path.with_suffix(".jsonl.1"))
    e = log.append("backup", "success")
    assert e["seq"] == 4 and e["prev"] == last["hash"]
    rep = log.verify_chain()
    assert rep.ok and rep.first_seq == 4 and rep.last_seq == 4


def test_torn_tail_is_terminated(tmp_path: Path) -> None:
    log = _three(tmp_path)
    with open(log.path, "ab") as fh:
        fh.write(b'{"v":1,"seq":4,"ts"')  # crash mid-write
    e = log.append("verify", "success")
    assert e["seq"] == 4
    assert json.loads(_lines(log)[-1])["seq"] == 4
    rep = log.verify_chain()
    assert not rep.ok and rep.bad_seq == 4  # the torn line is reported, not hidden


def _append_many(path: str, head: str, n: int) -> None:
    log = AuditLog(path, "web1", head_file=head)
    for _ in range(n):
        log.append("backup", "success")


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    path, head = str(tmp_path / "audit.jsonl"), str(tmp_path / "audit.head")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(path, head, 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    log = AuditLog(path, "web1", head_file=head)
    rep = log.verify_chain()
    assert rep.ok, rep.error
    assert rep.last_seq == 100


def test_secrets_are_not_added(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETSAFE_PASSPHRASE", "hunter2")
    log = _log(tmp_path)
    log.append("key", "success", details={"fingerprint": "ab12"})
    assert "hunter2" not in log.path.read_text()
