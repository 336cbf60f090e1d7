"""Real ansible-playbook run of audit_collect + fleet_report, then a real browser render.

Two "hosts" on this machine (``ansible_connection=local``) with generated audit
logs: web1 is healthy, web2's log was tampered with after the fact.  ghost is
in the inventory but never collected.  The test checks the store, the report
files, idempotence of a second run, and what headless Chromium renders.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ansible_collections.fleetsafe.backup.tests.unit.plugins.plugin_utils.audit_chain import (
    Chain,
    healthy_day,
)

pytestmark = pytest.mark.ansible

REPO = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")
CHROMIUM = "/usr/bin/chromium"

PLAYBOOK = """
- name: Collect audit events (AUD-LOG)
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Collect audit events into the central store (AUD-LOG)
      fleetsafe.backup.audit_collect:
        store: state/fleetsafe.db
        path: "{{ audit_log }}"
        config: "{{ agent_config }}"
        max_events: 7
      register: collected

    - name: Keep the task result for the test
      ansible.builtin.copy:
        content: "{{ collected | to_json }}"
        dest: "{{ results_dir }}/collect-{{ inventory_hostname }}.json"
        mode: "0600"
      delegate_to: localhost
      changed_when: false
      check_mode: false

    - name: Write the fleet report (MON-DAILY, CONSOLE)
      fleetsafe.backup.fleet_report:
        store: state/fleetsafe.db
        dest: reports
        hosts: "{{ groups['all'] }}"
        policy: {timezone: UTC}
        now: "{{ report_now }}"
      run_once: true
      delegate_to: localhost
      register: report

    - name: Keep the report result for the test
      ansible.builtin.copy:
        content: "{{ report | to_json }}"
        dest: "{{ results_dir }}/report.json"
        mode: "0600"
      run_once: true
      delegate_to: localhost
      changed_when: false
      check_mode: false
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, collections_root):
    if not os.access(ANSIBLE_PLAYBOOK, os.X_OK):
        pytest.skip(f"{ANSIBLE_PLAYBOOK} missing (run make venv)")
    base = tmp_path_factory.mktemp("site")
    now = datetime.now(UTC).replace(hour=15, minute=30, second=0, microsecond=0)
    logs = base / "logs"
    logs.mkdir()

    web1 = Chain("web1")
    healthy_day(web1, now)
    web1.write(str(logs / "web1.jsonl"))

    web2 = Chain("web2")
    healthy_day(web2, now)
    web2.add(at=now - timedelta(minutes=20), status="failure", type="incremental", bytes_added=0)
    events = copy.deepcopy(web2.events)
    events[5]["details"]["bytes_added"] = 1  # edited after the fact (AUD-LOG tamper)
    (logs / "web2.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))

    # an agent config whose state_dir (head file) is ours, never the machine's /var/lib/fleetsafe
    (base / "agent.yml").write_text(f"version: 1\nstate_dir: {base / 'agent-state'}\n")
    inventory = base / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        json.dumps(
            {
                "all": {
                    "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "agent_config": str(base / "agent.yml")},
                    "children": {
                        "fleet": {"hosts": {"web1": {"audit_log": str(logs / "web1.jsonl")}, "web2": {"audit_log": str(logs / "web2.jsonl")}}},
                        "offline": {"hosts": {"ghost": {}}},
                    },
                }
            }
        )
    )
    (base / "site.yml").write_text(PLAYBOOK)
    (base / "results").mkdir()
    return {"base": base, "now": now, "inventory": inventory, "web1": web1, "web2": web2, "collections": collections_root}


def run_playbook(site, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_COLLECTIONS_PATH": site["collections"],
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            "ANSIBLE_LOCAL_TEMP": str(site["base"] / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(site["base"] / "rtmp"),
            "ANSIBLE_FORKS": "5",
        }
    )
    cmd = [
        ANSIBLE_PLAYBOOK,
        "-i",
        str(site["inventory"] / "hosts.yml"),
        str(site["base"] / "site.yml"),
        "-e",
        f"results_dir={site['base'] / 'results'}",
        "-e",
        f"report_now={site['now'].strftime('%Y-%m-%dT%H:%M:%SZ')}",
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=site["base"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def recap(stdout: str) -> dict[str, dict[str, int]]:
    out = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", stdout, re.MULTILINE):
        out[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
    return out


@pytest.fixture(scope="module")
def first_run(site):
    return run_playbook(site)


def test_collect_fills_the_store_next_to_the_inventory(site, first_run):
    db = site["inventory"] / "state" / "fleetsafe.db"  # relative store path = next to the inventory
    assert db.exists() and (db.stat().st_mode & 0o777) == 0o600
    web1 = json.loads((site["base"] / "results" / "collect-web1.json").read_text())
    assert web1["changed"] and web1["chain_ok"] and web1["events_added"] == len(site["web1"].events)
    assert web1["batches"] >= 2  # max_events 7: bounded batches, never the whole log
    web2 = json.loads((site["base"] / "results" / "collect-web2.json").read_text())
    assert not web2["chain_ok"] and web2["events_added"] == 5 and web2["chain_error"]["seq"] == 6
    assert "edited" in web2["chain_error"]["reason"]
    assert "audit chain broken at seq 6" in first_run.stdout + first_run.stderr  # a visible warning
    with sqlite3.connect(db) as conn:
        counts = dict(conn.execute("SELECT host, count(*) FROM events GROUP BY host").fetchall())
        assert counts == {"web1": len(site["web1"].events), "web2": 5}
        status = dict(conn.execute("SELECT name, chain_status FROM hosts").fetchall())
        assert status == {"web1": "ok", "web2": "broken"}
        assert conn.execute("SELECT count(*) FROM collections").fetchone()[0] == 2


def test_report_files_and_statuses(site, first_run):
    reports = site["inventory"] / "reports"
    latest = reports / "latest"
    assert latest.is_symlink() and not os.path.isabs(os.readlink(latest))
    fleet = json.loads((latest / "fleet.json").read_text())
    assert fleet["schema_version"] == 1 and fleet["generated_at"].startswith(site["now"].strftime("%Y-%m-%dT%H:%M"))
    by_name = {h["name"]: h for h in fleet["hosts"]}
    assert list(by_name) == ["web1", "web2", "ghost"]
    assert by_name["web1"]["status"] == "green", by_name["web1"]["reasons"]
    assert by_name["web2"]["status"] == "red"
    assert any("AUD-LOG" in r["controls"] for r in by_name["web2"]["reasons"])
    assert by_name["ghost"]["status"] == "red" and not by_name["ghost"]["has_data"]
    result = json.loads((site["base"] / "results" / "report.json").read_text())
    assert result["summary"] == {"hosts": 3, "green": 1, "amber": 0, "red": 2}
    assert result["changed"] and result["red_hosts"] == ["web2", "ghost"]
    html = (latest / "index.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "FREQ-FULL" in html and "VER-CHECKSUM" in html and "AUD-LOG" in html


def test_second_run_is_idempotent(site, first_run):
    before = sorted(p.name for p in (site["inventory"] / "reports").iterdir())
    second = run_playbook(site)
    stats = recap(second.stdout)
    assert all(s["changed"] == 0 for s in stats.values()), second.stdout[-3000:]
    assert sorted(p.name for p in (site["inventory"] / "reports").iterdir()) == before
    web2 = json.loads((site["base"] / "results" / "collect-web2.json").read_text())
    assert not web2["chain_ok"] and web2["chain_error"]["seq"] == 6  # seen again, still broken
    with sqlite3.connect(site["inventory"] / "state" / "fleetsafe.db") as conn:
        assert conn.execute("SELECT count(*) FROM chain_breaks WHERE host = 'web2'").fetchone()[0] == 1  # recorded once


def test_check_mode_writes_nothing(site, first_run):
    db = site["inventory"] / "state" / "fleetsafe.db"
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT count(*) FROM collections").fetchone()[0]
    site["web1"].add(at=site["now"] + timedelta(minutes=1), type="incremental")
    site["web1"].write(str(site["base"] / "logs" / "web1.jsonl"))
    run_playbook(site, "--check")
    web1 = json.loads((site["base"] / "results" / "collect-web1.json").read_text())
    assert web1["changed"] and web1["events_added"] == 1  # counted ...
    with sqlite3.connect(db) as conn:  # ... but not stored
        assert conn.execute("SELECT count(*) FROM events WHERE host = 'web1'").fetchone()[0] == len(site["web1"].events) - 1
        assert conn.execute("SELECT count(*) FROM collections").fetchone()[0] == before


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="/usr/bin/chromium is not installed (apt-get install chromium; Makefile APT_PACKAGES)")
def test_rendered_in_a_real_browser(site, first_run, tmp_path):
    index = site["inventory"] / "reports" / "latest" / "index.html"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    proc = subprocess.run([CHROMIUM, *flags, "--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    dom = proc.stdout
    assert proc.returncode == 0 and "<table" in dom, proc.stderr[-2000:]
    rows = dict(re.findall(r'<tr data-host="([^"]+)" data-status="([^"]+)"', dom))
    assert rows == {"web1": "green", "web2": "red", "ghost": "red"}
    assert "no data" in dom and "broken" in dom
    shot = Path(os.environ.get("FLEETSAFE_REPORT_SCREENSHOT", tmp_path / "report.png"))
    subprocess.run(
        [CHROMIUM, *flags, "--hide-scrollbars", "--window-size=1500,1100", f"--screenshot={shot}", index.as_uri()],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
