"""Role fleetsafe.backup.agent against this machine (ansible_connection=local),
with every path in a temporary root: converge, converge again (changed=0),
check mode, the host key never regenerated, file modes, the schedule, and the
cross-field checks.  AUTO, ENC-REST, LOC-ONSITE, FREQ-FULL, FREQ-INCR."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import harness
import pytest
import yaml

pytestmark = pytest.mark.ansible

PLAYBOOK = """\
- name: Converge the fleetsafe agent role
  hosts: all
  gather_facts: false
  roles:
    - role: fleetsafe.backup.agent
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def converged(sandbox, wheels, recovery_pub):
    playbook = sandbox / "converge.yml"
    playbook.write_text(PLAYBOOK)
    variables = harness.sandbox_vars(sandbox, recovery_pub, [str(sandbox / "data")])
    inventory = harness.write_inventory(sandbox / "inventory.yml", variables)
    first = harness.run_playbook(playbook, inventory)
    assert first.rc == 0, first.explain()
    key = sandbox / "etc" / "keys" / "repo.key"
    return {"root": sandbox, "playbook": playbook, "inventory": inventory, "first": first,
            "key_sha": _sha(key), "vars": variables}


def test_first_run_installs_everything(converged):
    root = converged["root"]
    first = converged["first"]
    assert first.changed() > 0
    assert "Initialise the repository on the primary target (LOC-ONSITE)" in first.changed_tasks()
    # the agent runs from the venv through the link
    link = root / "bin" / "fleetsafe"
    assert link.is_symlink() and Path(link.resolve()) == (root / "opt" / "venv" / "bin" / "fleetsafe").resolve()
    out = subprocess.run([str(link), "--json", "--config", str(root / "etc" / "agent.yml"), "status"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["host"] == "localhost"
    # ENC-REST / DR-DRILL: the host key and the organisation's recovery key open it
    assert sorted(slot["type"] for slot in status["key_slots"]) == ["host", "recovery"]


def test_key_creation_is_in_the_configured_audit_log(converged):
    """`key create` runs with --config, so its event lands in the configured audit log."""
    log = converged["root"] / "log" / "audit.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    keys = [e for e in events if e.get("action") == "key"]
    assert len(keys) == 1 and keys[0]["details"]["operation"] == "create"
    assert keys[0]["details"]["file"] == str(converged["root"] / "etc" / "keys" / "repo.key")


def test_files_and_modes(converged):
    root = converged["root"]
    etc = root / "etc"
    assert _mode(etc / "keys") == 0o700
    assert _mode(etc / "keys" / "repo.key") == 0o600  # ENC-REST: the host key is private
    assert _mode(etc / "keys" / "recovery.pub") == 0o644
    assert _mode(etc / "agent.yml") == 0o600
    assert _mode(root / "state") == 0o700
    assert _mode(root / "log") == 0o750
    text = (etc / "agent.yml").read_text()
    assert text.startswith("#") and "Ansible managed" in text
    config = yaml.safe_load(text)
    assert config["version"] == 1
    assert config["key_file"] == str(etc / "keys" / "repo.key")
    assert config["recovery_public_key"] == str(etc / "keys" / "recovery.pub")
    assert config["targets"] == [{"name": "onsite", "url": str(root / "repo"), "primary": True}]
    assert config["sources"] == [str(root / "data")]
    assert (root / "opt" / "venv" / ".fleetsafe-wheels.sha256sums").read_bytes() == \
        (harness.ensure_wheels() / "SHA256SUMS").read_bytes()
    assert sorted(p.name for p in (root / "opt" / "wheels").iterdir()) == \
        sorted(p.name for p in harness.ensure_wheels().iterdir() if p.name != "fleetsafe-wheels.tar")


def test_cron_schedule_without_systemd(converged):
    """AUTO on a host without systemd: FREQ-FULL weekly, FREQ-INCR hourly 08-20, a daily verify."""
    root = converged["root"]
    cron = (root / "cron.d" / "fleetsafe").read_text()
    assert _mode(root / "cron.d" / "fleetsafe") == 0o644
    assert "FLEETSAFE_TRIGGER=timer" in cron
    lines = [line for line in cron.splitlines() if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(lines) == 3
    full, incr, verify = (line.split() for line in lines)
    assert full[1:5] == ["2", "*", "*", "0"] and incr[1:5] == ["8-20", "*", "*", "*"]
    # stable per-host minute, inside the report's incr_slack_minutes (30): the hourly run is
    # never counted as missed before it starts (FREQ-INCR)
    assert full[0] == incr[0] and 0 <= int(full[0]) < 30
    assert full[5] == "root" and "backup --type full" in " ".join(full)
    assert "backup --type incremental" in " ".join(incr)
    # VER-CHECKSUM / ENC-TEST: a daily check (read-data share from agent.yml)
    assert verify[1:5] == ["6", "*", "*", "*"] and verify[verify.index("--config") + 2] == "verify"
    assert (root / "logrotate.d" / "fleetsafe").exists()


def test_second_run_changes_nothing(converged):
    again = harness.run_playbook(converged["playbook"], converged["inventory"])
    assert again.rc == 0, again.explain()
    assert again.changed() == 0, again.changed_tasks()
    # the host key is never regenerated
    assert _sha(converged["root"] / "etc" / "keys" / "repo.key") == converged["key_sha"]


def test_check_mode_on_a_converged_host_changes_nothing(converged):
    run = harness.run_playbook(converged["playbook"], converged["inventory"], "--check", "--diff")
    assert run.rc == 0, run.explain()
    assert run.changed() == 0, run.changed_tasks()


def test_two_primary_targets_are_refused(converged):
    targets = [{"name": "a", "url": "/srv/a", "primary": True}, {"name": "b", "url": "/srv/b", "primary": True}]
    run = harness.run_playbook(converged["playbook"], converged["inventory"],
                               extra_vars={"fleetsafe_agent_targets": targets})
    assert run.rc != 0
    assert any("exactly one primary target" in msg for _name, msg in run.failed_tasks()), run.explain()


def test_target_without_url_is_refused(converged):
    run = harness.run_playbook(converged["playbook"], converged["inventory"],
                               extra_vars={"fleetsafe_agent_targets": [{"name": "onsite", "primary": True}]})
    assert run.rc != 0
    assert any("need a name and a url" in msg for _name, msg in run.failed_tasks()), run.explain()


def test_minute_range_pitfall_is_refused(converged):
    """ECOSYSTEM M6: '08:00..20:00' is a minute range (08:00-08:20 every minute), not hourly."""
    run = harness.run_playbook(converged["playbook"], converged["inventory"],
                               extra_vars={"fleetsafe_agent_incremental_on_calendar": "*-*-* 08:00..20:00"})
    assert run.rc != 0
    assert any("minute range" in msg for _name, msg in run.failed_tasks()), run.explain()


def test_invalid_on_calendar_is_caught_by_systemd_analyze(converged):
    run = harness.run_playbook(converged["playbook"], converged["inventory"],
                               extra_vars={"fleetsafe_agent_scheduler": "systemd",
                                           "fleetsafe_agent_full_on_calendar": "Sun *-*-* 25:00:00"})
    assert run.rc != 0
    failed = {name for name, _msg in run.failed_tasks()}
    assert failed == {"Check the OnCalendar expressions with systemd-analyze"}, run.explain()


def test_check_mode_on_a_fresh_host_succeeds_and_writes_nothing(tmp_path, wheels, recovery_pub):
    """Users run --check before onboarding a host (backup-role issue threads)."""
    playbook = tmp_path / "converge.yml"
    playbook.write_text(PLAYBOOK)
    variables = harness.sandbox_vars(tmp_path, recovery_pub, [str(tmp_path)])
    inventory = harness.write_inventory(tmp_path / "inventory.yml", variables)
    run = harness.run_playbook(playbook, inventory, "--check", "--diff")
    assert run.rc == 0, run.explain()
    assert run.changed() > 0
    assert not (tmp_path / "opt").exists() and not (tmp_path / "etc").exists()


def test_scheduler_none_removes_the_schedule(converged):
    """Runs last on the converged root: backups then only run from playbooks."""
    cron = converged["root"] / "cron.d" / "fleetsafe"
    assert cron.exists()
    run = harness.run_playbook(converged["playbook"], converged["inventory"],
                               extra_vars={"fleetsafe_agent_scheduler": "none"})
    assert run.rc == 0, run.explain()
    assert not cron.exists()
    assert "Remove the cron schedule" in run.changed_tasks()
