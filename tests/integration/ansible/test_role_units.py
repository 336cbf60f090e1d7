"""The systemd units of role fleetsafe.backup.agent, rendered from the role's
own templates and defaults and checked with `systemd-analyze verify` (this
machine has no systemd as PID 1; the container fleet runs them for real).
AUTO, FREQ-FULL, FREQ-INCR, VER-CHECKSUM; ECOSYSTEM M6/M7."""

from __future__ import annotations

import configparser
import shutil
import subprocess

import harness
import pytest

pytestmark = [pytest.mark.ansible,
              pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")]

ROLE = harness.ROOT / "roles" / "agent"

PLAYBOOK = f"""\
- name: Render the agent role's systemd units
  hosts: localhost
  gather_facts: false
  vars_files:
    - {ROLE}/defaults/main.yml
    - {ROLE}/vars/main.yml
  tasks:
    - name: Render the services
      ansible.builtin.template:
        src: {ROLE}/templates/fleetsafe.service.j2
        dest: "{{{{ out }}}}/fleetsafe-{{{{ item.name }}}}.service"
        mode: "0644"
      loop: "{{{{ _fleetsafe_agent_jobs }}}}"
    - name: Render the timers
      ansible.builtin.template:
        src: {ROLE}/templates/fleetsafe.timer.j2
        dest: "{{{{ out }}}}/fleetsafe-{{{{ item.name }}}}.timer"
        mode: "0644"
      loop: "{{{{ _fleetsafe_agent_jobs }}}}"
"""


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    out = tmp_path_factory.mktemp("units")
    playbook = out / "render.yml"
    playbook.write_text(PLAYBOOK)
    inventory = harness.write_inventory(out / "inventory.yml", {})
    run = harness.run_playbook(playbook, inventory, extra_vars={
        "out": str(out), "fleetsafe_agent_bin_link": "/bin/true",
        "fleetsafe_agent_recovery_public_key_src": "/nonexistent"})
    assert run.rc == 0, run.explain()
    return out


def _parse(path):
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    cp.optionxform = str
    cp.read(path)
    return cp


def test_units_pass_systemd_analyze_verify(units):
    files = sorted(str(p) for p in units.glob("fleetsafe-*.*"))
    assert len(files) == 6
    out = subprocess.run(["systemd-analyze", "verify", *files], check=False, capture_output=True, text=True, cwd=units)
    assert out.returncode == 0 and "Unknown" not in out.stderr, out.stderr


@pytest.mark.parametrize("job, calendar", [("full", "Sun *-*-* 02:00:00"),
                                           ("incremental", "*-*-* 08..20:00:00"),
                                           ("verify", "*-*-* 06:30:00")])
def test_timer_settings(units, job, calendar):
    timer = _parse(units / f"fleetsafe-{job}.timer")["Timer"]
    assert timer["OnCalendar"] == calendar
    assert timer["Persistent"] == "true"
    assert timer["RandomizedDelaySec"] == "600"
    assert timer["AccuracySec"] == "1us" and timer["FixedRandomDelay"] == "true"
    assert timer["Unit"] == f"fleetsafe-{job}.service"
    assert _parse(units / f"fleetsafe-{job}.timer")["Install"]["WantedBy"] == "timers.target"


def test_incremental_calendar_is_hourly_08_to_20():
    """FREQ-INCR default: 13 runs a day on the hour, not the minute-range pitfall."""
    out = subprocess.run(["systemd-analyze", "calendar", "--iterations=14", "*-*-* 08..20:00:00"],
                         capture_output=True, text=True, check=True)
    times = [line.split()[-2] for line in out.stdout.splitlines() if "Iter." in line or "Next elapse" in line]
    hours = sorted({t.split(":")[0] for t in times})
    assert all(t.endswith(":00:00") for t in times) and len(hours) == 13


@pytest.mark.parametrize("job, args", [("full", "backup --type full"), ("incremental", "backup --type incremental"),
                                       ("verify", "verify")])
def test_service_settings(units, job, args):
    svc = _parse(units / f"fleetsafe-{job}.service")["Service"]
    assert svc["Type"] == "oneshot"
    assert svc["Environment"] == "FLEETSAFE_TRIGGER=timer"
    assert svc["SyslogIdentifier"] == "fleetsafe"
    assert svc["ExecStart"] == f"/bin/true --config /etc/fleetsafe/agent.yml {args}"
