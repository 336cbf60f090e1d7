"""The CLI contract (docs/cli.md): one JSON document, stable exit codes, an audit event per action."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import Agent, make_agent, restored_root, tree_state


def test_init_and_key_create_via_cli(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "h", init=False)
    k = agent.run("key", "create").doc
    key_file = tmp_path / "h" / "keys" / "repo.key"
    assert k["file"] == str(key_file) and len(k["fingerprint"]) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() not in json.dumps(agent.events())  # never log secrets
    r = agent.run("key", "create", expect=6)  # never overwrites a key
    assert r.doc["error"] == "key_file"
    first = agent.run("init").doc
    assert first["created"] is True and first["key_slots"][0]["fingerprint"] == k["fingerprint"]
    again = agent.run("init").doc
    assert again["created"] is False and again["repository"] == first["repository"]  # idempotent
    assert [e["action"] for e in agent.events()] == ["key", "key", "init", "init"]
    assert [e["status"] for e in agent.events()] == ["success", "failure", "success", "success"]


def test_every_subcommand_speaks_json(agent: Agent) -> None:
    (agent.src / "f").write_bytes(b"x")
    for args in (["backup", "--type", "full"], ["snapshots"], ["verify"], ["status"], ["audit"],
                 ["audit", "--verify-chain"], ["restore", "latest"], ["selftest"], ["replicate"]):
        r = agent.run(*args)
        assert r.doc["exit_code"] == 0
        assert r.doc.get("action") == args[0]


def test_status_document(agent: Agent) -> None:
    (agent.src / "f").write_bytes(b"x")
    full = agent.run("backup", "--type", "full").doc
    inc = agent.run("backup").doc
    s = agent.run("status").doc
    assert s["host"] == "testhost" and s["snapshots"] == 2 and s["locked"] is False
    assert s["last_full"]["id"] == full["snapshot_id"] and s["last_incremental"]["id"] == inc["snapshot_id"]
    assert [k["type"] for k in s["key_slots"]] == ["host"]
    with open(agent.state / "agent.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert agent.run("status").doc["locked"] is True


def test_errors_are_json_documents_with_stable_exit_codes(agent: Agent, tmp_path: Path) -> None:
    r = agent.run("frobnicate", expect=2)
    assert r.doc["error"] == "usage" and "frobnicate" in r.doc["message"]
    agent.run("backup", "--type", "weekly", expect=2)
    agent.run("restore", "0123abcd", expect=9)
    r = agent.run("--target", "nowhere", "snapshots", expect=2)
    assert "no such target" in r.doc["message"]
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 1\nexlude: []\n")
    r = agent.run("--config", str(bad), "status", expect=2)
    assert r.doc["error"] == "config" and "exlude" in r.doc["message"]


def test_overlapping_run_exits_locked_immediately(agent: Agent) -> None:
    (agent.src / "f").write_bytes(b"x")
    agent.state.mkdir(exist_ok=True)
    with open(agent.state / "agent.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # what a running timer backup holds
        r = agent.run("backup", expect=4)
    assert r.doc["error"] == "locked"
    ev = agent.events()[-1]
    # an overlapping timer run is not a failed backup: its own status, so reports do not count it
    assert ev["action"] == "backup" and ev["status"] == "locked" and ev["details"]["error"] == "locked"
    agent.run("backup")  # lock released: runs


def test_wrong_key_is_a_denied_attempt(agent: Agent) -> None:
    key = agent.base / "keys" / "repo.key"
    key.chmod(0o600)
    key.write_text("A" * 43 + "=\n")  # a valid 32-byte key, but not this repository's
    r = agent.run("snapshots", expect=6)
    assert r.doc["error"] == "wrong_key"
    ev = agent.events()[-1]
    assert ev["action"] == "snapshots" and ev["status"] == "denied"  # AC-LOG


def test_audit_trail_and_tamper_detection(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    agent.env["FLEETSAFE_TRIGGER"] = "timer"
    agent.env["FLEETSAFE_AWX_JOB_ID"] = "77"
    (agent.src / "f").write_bytes(b"x")
    agent.run("backup", "--type", "full")
    agent.run("verify")
    agent.run("snapshots")
    events = agent.events()
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert events[0]["actor"] == {"user": events[0]["actor"]["user"], "uid": os.getuid(), "via": "timer", "awx_job_id": "77"}
    assert events[0]["data_sets"] == [str(agent.src)] and events[0]["details"]["type"] == "full"
    assert events[0]["details"]["key"]["type"] == "host"
    assert stat.S_IMODE(agent.audit_log.stat().st_mode) == 0o640

    since = agent.run("audit", "--since", "1").doc
    assert [e["seq"] for e in since["events"]] == [2, 3]
    ok = agent.run("audit", "--verify-chain").doc
    assert ok["chain_ok"] is True and ok["last_seq"] == 3 and ok["head_hash"] == events[-1]["hash"]

    lines = agent.audit_log.read_text().splitlines()
    lines[1] = lines[1].replace('"status":"success"', '"status":"failure"')
    agent.audit_log.write_text("\n".join(lines) + "\n")
    bad = agent.run("audit", "--verify-chain", expect=5).doc
    assert bad["chain_ok"] is False and bad["bad_seq"] == 2


def test_secondary_target_down_makes_backup_partial(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the offsite repository should be")
    agent = make_agent(tmp_path / "h", targets=[
        {"name": "onsite", "url": str(tmp_path / "h" / "repo"), "primary": True},
        {"name": "offsite", "url": str(blocker / "repo")},
    ])
    (agent.src / "f").write_bytes(b"x")
    r = agent.run("backup", "--type", "full", expect=3)
    assert r.doc["status"] == "partial" and r.doc["snapshot_id"]
    assert [e["target"] for e in r.doc["errors"]] == ["offsite"]
    assert r.doc["replication"][0]["ok"] is False


def test_replication_to_second_target(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "h", targets=[
        {"name": "onsite", "url": str(tmp_path / "h" / "repo"), "primary": True},
        {"name": "offsite", "url": str(tmp_path / "offsite")},
    ])
    (agent.src / "f").write_bytes(b"replicated")
    sid = agent.run("backup", "--type", "full").doc["snapshot_id"]
    snaps = agent.run("--target", "offsite", "snapshots").doc["snapshots"]
    assert [s["id"] for s in snaps] == [sid]
    out = tmp_path / "from-offsite"
    agent.run("restore", sid, "--target", "offsite", "--target-dir", str(out))
    assert (restored_root(out, agent.src) / "f").read_bytes() == b"replicated"


def test_dead_host_restore_with_recovery_key(tmp_path: Path) -> None:
    # The organisation's recovery key pair (passphrase from a file, never the command line).
    org = tmp_path / "org"
    org.mkdir()
    pw = org / "pass"
    pw.write_text("correct horse battery staple\n")
    admin = make_agent(tmp_path / "admin", init=False)
    admin.env["FLEETSAFE_PASSPHRASE_FILE"] = str(pw)
    rk = admin.run("key", "recovery-create", "--private", str(org / "rec.pem"), "--public", str(org / "rec.pub")).doc
    assert "correct horse" not in (org / "rec.pem").read_text()

    host = make_agent(tmp_path / "web1", init=False, recovery_public_key=str(org / "rec.pub"))
    host.run("key", "create")
    init = host.run("init").doc
    assert {s["type"] for s in init["key_slots"]} == {"host", "recovery"}
    assert rk["fingerprint"] in {s["fingerprint"] for s in init["key_slots"]}
    (host.src / "etc").mkdir()
    (host.src / "etc" / "app.conf").write_bytes(b"precious config")
    sid = host.run("backup", "--type", "full").doc["snapshot_id"]
    expected = tree_state(host.src)

    # The host dies: its key is gone.  New hardware has only the repository and the recovery key.
    (tmp_path / "web1" / "keys" / "repo.key").unlink()
    host.run("snapshots", expect=6)
    new = make_agent(tmp_path / "new", init=False, targets=[{"name": "onsite", "url": str(host.repo)}])
    new.env["FLEETSAFE_PASSPHRASE_FILE"] = str(pw)
    out = tmp_path / "recovered"
    r = new.run("--recovery-key", str(org / "rec.pem"), "restore", sid, "--target-dir", str(out))
    assert r.doc["status"] == "success"
    assert tree_state(restored_root(out, host.src)) == expected
    ev = new.events()[-1]
    assert ev["action"] == "restore" and ev["details"]["key"] == {"type": "recovery", "fingerprint": rk["fingerprint"]}
    pw.write_text("wrong\n")
    r = new.run("--recovery-key", str(org / "rec.pem"), "snapshots", expect=6)
    assert r.doc["error"] == "key_file" and "wrong passphrase" in r.doc["message"]
    ev = new.events()[-1]
    assert ev["action"] == "snapshots" and ev["status"] == "denied" and ev["details"]["error"] == "key_file"  # AC-LOG


def test_progress_never_on_stdout_and_not_without_tty(agent: Agent) -> None:
    (agent.src / "f").write_bytes(os.urandom(1000))
    r = agent.run("backup", "--type", "full")
    assert "\r" not in r.stderr  # stderr is a pipe here: no progress noise
    human = agent.run("snapshots", json_out=False)
    assert "1 snapshot(s)" in human.stdout


def test_selftest_cli(agent: Agent) -> None:
    d = agent.run("selftest").doc
    assert d["status"] == "ok" and len(d["checks"]) == 3 and all(c["ok"] for c in d["checks"])


def test_local_repository_and_restores_inside_sources_are_not_backed_up(tmp_path: Path) -> None:
    base = tmp_path / "h"
    agent = make_agent(base, sources=[str(base)], state_dir=str(base / "state"))
    (base / "data").mkdir()
    (base / "data" / "f").write_bytes(b"x")
    agent.run("backup", "--type", "full")
    agent.run("restore", "latest")  # lands in state/restore, inside the source
    second = agent.run("backup", "--type", "full").doc
    out = tmp_path / "out"
    agent.run("restore", second["snapshot_id"], "--target-dir", str(out))
    root = restored_root(out, base)
    assert (root / "data" / "f").read_bytes() == b"x"
    assert not (root / "repo").exists()  # the repository did not back itself up
    assert not (root / "state" / "restore").exists()
    assert (root / "agent.yml").exists()


def test_sample_restore_compares_with_live_files(agent: Agent) -> None:
    """VER-SAMPLE: N random files restored, hashed and compared with the unchanged live files."""
    for i in range(20):
        (agent.src / f"f{i:02d}").write_bytes(os.urandom(1000 + i))
    agent.run("backup", "--type", "full")
    r = agent.run("restore", "latest", "--sample", "5").doc
    assert r["status"] == "success" and r["sample_ok"] is True and r["files"] == 5
    assert [s["live"] for s in r["samples"]] == ["match"] * 5
    assert r["target_dir_removed"] is True and not Path(r["target_dir"]).exists()
    ev = agent.events()[-1]
    assert ev["action"] == "restore" and ev["details"]["sample"]["match"] == 5

    # Damage the data behind every sample: the repository copy no longer matches the live files.
    for p in agent.src.iterdir():
        st = p.stat()
        with open(p, "r+b") as fh:  # same size, mtime reset -- but ctime moves: "changed", not "differs"
            fh.write(b"X")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    r2 = agent.run("restore", "latest", "--sample", "3").doc
    assert [s["live"] for s in r2["samples"]] == ["changed"] * 3 and r2["sample_ok"] is True


def test_ls_lists_a_snapshot(agent: Agent) -> None:
    (agent.src / "etc").mkdir()
    (agent.src / "etc" / "hosts").write_bytes(b"127.0.0.1\n")
    os.symlink("hosts", agent.src / "etc" / "link")
    with open(os.path.join(os.fsencode(agent.src), b"caf\xe9"), "wb") as fh:
        fh.write(b"x")
    sid = agent.run("backup", "--type", "full").doc["snapshot_id"]
    d = agent.run("ls", sid[:8], "--include", str(agent.src / "etc")).doc
    assert d["snapshot"] == sid and d["count"] == 3 and not d["truncated"]
    by = {e["path"]: e for e in d["entries"]}
    assert by[str(agent.src / "etc" / "hosts")]["size"] == 10
    assert by[str(agent.src / "etc" / "link")]["target"] == "hosts"
    full = agent.run("ls", "latest", "--limit", "2").doc
    assert len(full["entries"]) == 2 and full["truncated"] and full["count"] > 2
    names = [e["path"] for e in agent.run("ls", "latest", "--limit", "0").doc["entries"]]
    assert str(agent.src) + "/caf\\xe9" in names  # not UTF-8: shown escaped, never a broken document
    assert agent.events()[-1]["action"] == "ls"


def test_backup_hooks(tmp_path: Path) -> None:
    base = tmp_path / "h"
    dump = base / "src" / "db.sql"
    marker = tmp_path / "after.txt"
    after = ["/bin/sh", "-c", f'echo "$FLEETSAFE_BACKUP_STATUS $FLEETSAFE_SNAPSHOT_ID" > {marker}']
    agent = make_agent(base, hooks={"before_backup": [["/bin/sh", "-c", f"echo dumped > {dump}"]],
                                    "after_backup": [after, ["/bin/false"]]})
    d = agent.run("backup", "--type", "full").doc
    assert [h["command"] for h in d["hooks"]] == ["/bin/sh", "/bin/sh", "/bin/false"]
    assert marker.read_text().split() == ["success", d["snapshot_id"]]
    assert any("after_backup hook /bin/false" in w for w in d["warnings"])  # a warning, not a failure
    out = tmp_path / "out"
    agent.run("restore", d["snapshot_id"], "--target-dir", str(out), "--include", str(dump))
    assert (restored_root(out, base / "src") / "db.sql").read_text() == "dumped\n"

    # A failing before hook stops the run: no snapshot of a half-written dump.
    failing = make_agent(tmp_path / "f", hooks={"before_backup": [["/bin/sh", "-c", "exit 3"]], "after_backup": [after]})
    r = failing.run("backup", expect=1)
    assert r.doc["error"] == "hook_failed" and "exit code 3" in r.doc["message"]
    assert failing.run("snapshots").doc["snapshots"] == []
    assert marker.read_text().split() == ["failure"]  # after hooks still ran
    ev = [e for e in failing.events() if e["action"] == "backup"][-1]
    assert ev["status"] == "failure" and ev["details"]["error"] == "hook_failed"


def test_full_of_a_source_subset_is_not_the_policy_full(agent: Agent) -> None:
    # FREQ-FULL: `backup --type full --source <subset>` must not count as the weekly full.
    (agent.src / "etc").mkdir()
    (agent.src / "etc" / "hostname").write_bytes(b"web1\n")
    full = agent.run("backup", "--type", "full").doc
    assert full["policy_scope"] is True
    same = agent.run("backup", "--type", "full", "--source", str(agent.src) + "/").doc  # the configured list
    assert same["policy_scope"] is True
    sub = agent.run("backup", "--type", "full", "--source", str(agent.src / "etc" / "hostname")).doc
    assert sub["policy_scope"] is False and sub["type"] == "full"
    ev = agent.events()[-1]
    assert ev["action"] == "backup" and ev["details"]["policy_scope"] is False
    assert [e["details"]["policy_scope"] for e in agent.events() if e["action"] == "backup"][-3:] == [True, True, False]
    snaps = {s["id"]: s for s in agent.run("snapshots").doc["snapshots"]}
    assert snaps[full["snapshot_id"]]["policy_scope"] is True and snaps[same["snapshot_id"]]["policy_scope"] is True
    assert snaps[sub["snapshot_id"]]["policy_scope"] is False
    assert agent.run("status").doc["last_full"]["id"] == same["snapshot_id"]  # the subset full is skipped
    # A failed run still says what it covered.
    agent.run("backup", "--source", str(agent.base / "missing"), expect=None)
    assert agent.events()[-1]["details"]["policy_scope"] is False
    # Snapshots written before the field existed were backups of the configured sources.
    from fleetsafe.commands import _snapshot_summary

    assert _snapshot_summary({"id": "ab" * 32, "type": "full"})["policy_scope"] is True


def test_key_create_without_config_warns_on_stderr(tmp_path: Path) -> None:
    # The role runs `key create --file ...` without --config: the audit event cannot be written,
    # and a person (no --json) must see that on stderr.
    agent = make_agent(tmp_path / "h", init=False)
    env = {**agent.env, "FLEETSAFE_CONFIG": str(tmp_path / "no-such-agent.yml")}
    for n, json_args in enumerate(([], ["--json"])):
        key = tmp_path / f"k{n}" / "repo.key"
        p = subprocess.run([sys.executable, "-m", "fleetsafe", *json_args, "key", "create", "--file", str(key)],
                           env=env, text=True, capture_output=True, check=False)
        assert p.returncode == 0 and key.exists(), p.stderr
        assert "audit event not written" in p.stderr and "no-such-agent.yml" in p.stderr, p.stderr
        if json_args:
            assert any("audit event not written" in w for w in json.loads(p.stdout)["warnings"])
        else:
            assert "audit event not written" not in p.stdout and "created" in p.stdout  # stdout: the result only
