"""End to end: the demo job (playbooks/site.yml) on this machine as a one-host
fleet, with every path in a temporary root, run twice like `make demo`; then a
file is restored from the newest snapshot with the agent and compared by
checksum, and the fleet report is checked for the host's row.

FREQ-FULL / FREQ-INCR (full only when none is younger than the window),
LOC-ONSITE, VER-CHECKSUM / ENC-TEST (verify with read-data sample), AUD-LOG
(audit collected into the store), MON-DAILY / CONSOLE (report).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import harness
import pytest

pytestmark = [pytest.mark.ansible, pytest.mark.slow]

SITE = harness.ROOT / "playbooks" / "site.yml"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def agent(root: Path, *args: str) -> dict:
    exe = root / "bin" / "fleetsafe"
    out = subprocess.run([str(exe), "--json", "--config", str(root / "etc" / "agent.yml"), *args],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"fleetsafe {args}: rc={out.returncode} {out.stdout} {out.stderr}"
    return json.loads(out.stdout)


def find_host_row(doc, host: str) -> bool:
    """True when the report names the host (as a key or as a value)."""
    if isinstance(doc, dict):
        return host in doc or any(find_host_row(v, host) for v in doc.values())
    if isinstance(doc, list):
        return any(find_host_row(v, host) for v in doc)
    return doc == host


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    harness.ensure_wheels()
    root = tmp_path_factory.mktemp("demo")
    data = root / "data"
    shutil.copytree("/usr/share/common-licenses", data / "licenses", symlinks=True)
    (data / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # more than one chunk
    variables = harness.sandbox_vars(root, root / "recovery" / "recovery.pub", [str(data)])
    variables.update({
        "fleetsafe_recovery_dir": str(root / "recovery"),  # controller.yml creates the pair here
        "fleetsafe_store_path": str(root / "state" / "fleetsafe.db"),
        "fleetsafe_reports_dir": str(root / "reports"),
        # like inventories/local: every run takes an incremental
        "fleetsafe_policy": {"incremental_interval_minutes": 0},
    })
    inventory = harness.write_inventory(root / "inventory.yml", variables)
    first = harness.run_playbook(SITE, inventory)
    assert first.rc == 0, first.explain()
    return {"root": root, "data": data, "inventory": inventory, "first": first}


def test_first_run_takes_a_full_and_an_incremental(demo):
    snaps = agent(demo["root"], "snapshots")["snapshots"]
    assert [s["type"] for s in snaps] == ["full", "incremental"]
    assert all(s["status"] == "success" for s in snaps)
    recovery_key = demo["root"] / "recovery" / "recovery.key"
    assert oct(recovery_key.stat().st_mode & 0o777) == "0o600"
    assert oct((demo["root"] / "recovery" / "passphrase").stat().st_mode & 0o777) == "0o600"


def test_report_has_the_host_row(demo):
    latest = demo["root"] / "reports" / "latest"
    assert (latest / "index.html").exists()
    fleet = json.loads((latest / "fleet.json").read_text())
    assert find_host_row(fleet, "localhost")
    (row,) = [h for h in fleet["hosts"] if h["name"] == "localhost"]
    snaps = agent(demo["root"], "snapshots")["snapshots"]
    # the report is made from the store, and the store holds what the agent did
    assert row["last_full"]["snapshot_id"] == snaps[0]["id"]
    assert row["status"] != "red", row["reasons"]
    assert (demo["root"] / "state" / "fleetsafe.db").exists()


def test_second_run_takes_only_an_incremental_and_restore_matches(demo):
    root, data = demo["root"], demo["data"]
    changed = data / "licenses" / "GPL-3"
    changed.write_text(changed.read_text() + "\nchanged between runs\n")
    second = harness.run_playbook(SITE, demo["inventory"])
    assert second.rc == 0, second.explain()
    assert "Take a full backup when none is younger than the FREQ-FULL window" not in second.ran()
    assert "Take an incremental backup when none is younger than the FREQ-INCR interval" in second.changed_tasks()
    snaps = agent(root, "snapshots")["snapshots"]
    assert [s["type"] for s in snaps] == ["full", "incremental", "incremental"]

    newest = snaps[-1]["id"]
    target = root / "restored"
    result = agent(root, "restore", newest, "--target-dir", str(target))
    assert result["status"] == "success", result
    originals = [p for p in data.rglob("*") if p.is_file() and not p.is_symlink()]
    assert originals
    for original in originals:
        rel = original.relative_to("/")
        restored = target / rel
        assert restored.is_file(), f"{restored} missing after restore"
        assert sha256(restored) == sha256(original), original


def test_dead_host_is_restorable_with_the_recovery_key_alone(demo, tmp_path):
    """ENC-REST / DR-DRILL: new hardware, no host key, only the organisation's
    recovery private key (and its passphrase) and the onsite repository."""
    root, data = demo["root"], demo["data"]
    config = tmp_path / "agent.yml"
    config.write_text(json.dumps({
        "version": 1, "host": "replacement", "key_file": str(tmp_path / "no-such.key"),
        "state_dir": str(tmp_path / "state"), "audit_log": str(tmp_path / "audit.jsonl"),
        "sources": ["/etc"], "targets": [{"name": "onsite", "url": str(root / "repo")}],
    }))
    wanted = data / "licenses" / "Apache-2.0"
    out = subprocess.run(
        [str(root / "bin" / "fleetsafe"), "--json", "--config", str(config),
         "--recovery-key", str(root / "recovery" / "recovery.key"),
         "restore", "latest", "--include", str(wanted), "--target-dir", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
        env={**os.environ, "FLEETSAFE_PASSPHRASE_FILE": str(root / "recovery" / "passphrase")})
    assert out.returncode == 0, out.stdout + out.stderr
    restored = tmp_path / "out" / wanted.relative_to("/")
    assert sha256(restored) == sha256(wanted)


def test_rerun_within_the_incremental_interval_changes_nothing(demo):
    """STYLE 3: with the fleet default (an incremental at most every 60 min), a
    re-run of the whole site playbook reports changed=0 on a host already done."""
    again = harness.run_playbook(SITE, demo["inventory"],
                                 extra_vars={"fleetsafe_policy": {"incremental_interval_minutes": 60}})
    assert again.rc == 0, again.explain()
    assert again.changed() == 0, again.changed_tasks()
