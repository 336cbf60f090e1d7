"""The fleet test (issue 3): the site playbook over real SSH on container hosts.

One fleet for the whole module, and the tests run in order, as an operator would:

1. three hosts (two servers as root, one workstation as the non-root ``ops`` user
   with ``become``) — the site playbook deploys, backs up, verifies and reports;
2. a fourth host is added to the inventory — the re-run onboards it and changes
   nothing on the first three (no key regenerated, no timer rewritten);
3. one host becomes unreachable and another one's backup fails (its backup target, a
   small tmpfs, is full) — the others still get their backups, the report shows both
   failed hosts red with the reason, and the run's summary and ``set_stats`` count them.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from fleetlib import BUILD, REPO, SITE, WHEELS, Fleet, ansible_env, run_playbook

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

FLEET = "ft"
BASE_PORT = 22021
FIRST = [("ft-srv-1", "servers", "root"), ("ft-srv-2", "servers", "root"),
         ("ft-ws-1", "workstations", "ops")]
FOURTH = ("ft-ws-2", "workstations", "root")
WORK = BUILD / "fleet-test"
# The fourth host's onsite target is a small tmpfs, so that test 3 can fill it up.
TARGET = "/var/backups/fleetsafe"
SMALL_TARGET = ["--mount", f"type=tmpfs,destination={TARGET},tmpfs-size=32m,tmpfs-mode=0700"]


@pytest.fixture(scope="module")
def fleet(fleet_image, controller_ready, molecule_runs):
    # molecule_runs: the molecule scenarios start now, in the background, and overlap
    # with this module (tests/fleet/test_molecule.py waits for them).
    shutil.rmtree(WORK, ignore_errors=True)
    f = Fleet(FLEET, state_dir=BUILD / "fleet", image=fleet_image, inventory=WORK / "inventory",
              group_vars=REPO / "inventories" / "demo" / "group_vars")
    try:
        f.up(FIRST, BASE_PORT)
        yield f
    finally:
        f.down()


@pytest.fixture(scope="module")
def site(fleet, collections_path):
    """Run playbooks/site.yml on the fleet with a store and reports of its own."""
    env = ansible_env(collections_path)
    extra = {"fleetsafe_store_path": str(WORK / "state" / "fleetsafe.db"),
             "fleetsafe_reports_dir": str(WORK / "reports"),
             "fleetsafe_agent_wheels_dir": str(WHEELS)}

    def run(label: str, **more):
        r = run_playbook(SITE, fleet.inventory, env, WORK / "logs" / f"site-{label}.log", {**extra, **more})
        print(f"site.yml ({label}): rc={r.rc}, {r.seconds:.0f} s")
        return r

    return run


# ---------------------------------------------------------------- what the hosts and report say
def report() -> dict:
    """The latest fleet report (fleet.json), its host rows keyed by host name."""
    path = WORK / "reports" / "latest" / "fleet.json"
    assert path.exists(), f"no report at {path}"
    doc = json.loads(path.read_text())
    return {row["name"]: row for row in doc["hosts"]}


def reasons(row: dict) -> str:
    return "; ".join(r["message"] for r in row.get("reasons", []))


def _utc(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


def host_snapshots(fleet: Fleet, host: str) -> list[dict]:
    """The host's snapshots, asked of the agent on the host over SSH (not of the report)."""
    out = fleet.ssh(host, "fleetsafe --json snapshots").stdout
    return json.loads(out)["snapshots"]


def host_fingerprint(fleet: Fleet, host: str) -> str:
    """What a re-run must not touch: the key, the unit files, the config (content + mtime)."""
    return fleet.ssh(host, "cd / && sha256sum etc/fleetsafe/keys/repo.key etc/fleetsafe/agent.yml "
                           "etc/systemd/system/fleetsafe-*.timer etc/systemd/system/fleetsafe-*.service "
                           "&& stat -c '%n %Y %a %U' etc/fleetsafe/keys/repo.key "
                           "etc/systemd/system/fleetsafe-*.timer").stdout


def assert_fresh_backup(fleet: Fleet, host: str, since: dt.datetime, row: dict) -> None:
    """The host itself has a snapshot taken after ``since``, and the report row is green
    and names the host's newest snapshot."""
    snaps = host_snapshots(fleet, host)
    assert snaps, f"{host}: no snapshot on the host"
    assert _utc(snaps[-1]["end"]) >= since, f"{host}: newest snapshot {snaps[-1]['end']} is older than {since}"
    assert row["status"] == "green", f"{host}: report row is {row['status']}: {reasons(row)}"
    assert row["last_backup"]["snapshot_id"] == snaps[-1]["id"], (row["last_backup"], snaps[-1])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# ---------------------------------------------------------------- 1. three hosts
def test_site_backs_up_three_hosts_over_ssh(fleet, site):
    since = _now()
    r = site("three-hosts")
    names = [h for h, *_ in FIRST]
    assert r.rc == 0, r.summary()
    for h in names:
        assert r.stats[h]["failures"] == 0 and r.stats[h]["unreachable"] == 0, r.summary()
        assert r.changed(h) > 0, f"{h}: a first run must deploy something"
    rows = report()
    assert sorted(rows) == sorted(names), rows
    for h in names:
        assert_fresh_backup(fleet, h, since, rows[h])
    # the workstation was driven by a non-root SSH user with become
    assert fleet.host("ft-ws-1").user == "ops"
    denied = fleet.ssh("ft-ws-1", "cat /etc/fleetsafe/keys/repo.key", user="ops", check=False)
    assert denied.returncode != 0, "the ops user must not read the host key without sudo"


# ---------------------------------------------------------------- 2. onboarding
def test_adding_a_host_onboards_it_and_leaves_the_others_unchanged(fleet, site):
    names = [h for h, *_ in FIRST]
    before = {h: host_fingerprint(fleet, h) for h in names}
    fleet.add(FOURTH[0], FOURTH[1], port=BASE_PORT + len(FIRST), user=FOURTH[2], podman_args=SMALL_TARGET)
    since = _now()
    r = site("onboard")
    assert r.rc == 0, r.summary()
    for h in names:
        assert r.changed(h) == 0, f"{h}: changed on re-run: {r.changed_tasks(h)}"
        assert host_fingerprint(fleet, h) == before[h], f"{h}: key, config or units rewritten"
    assert r.changed(FOURTH[0]) > 0
    rows = report()
    assert sorted(rows) == sorted(names + [FOURTH[0]]), rows
    assert_fresh_backup(fleet, FOURTH[0], since, rows[FOURTH[0]])
    # the workstation schedule came from group_vars/workstations.yml
    cal = fleet.ssh(FOURTH[0], "systemctl show -p TimersCalendar --value fleetsafe-full.timer").stdout
    assert "Mon *-*-* 12:30:00" in cal, cal


# ---------------------------------------------------------------- 3. failure isolation
def test_one_host_down_and_one_failing_do_not_stop_the_others(fleet, site):
    down, failing = "ft-srv-2", FOURTH[0]
    healthy = ["ft-srv-1", "ft-ws-1"]
    fleet.stop(down)
    # Fill the failing host's backup target (its own small tmpfs): the next backup
    # there fails with "no space left", as on a host whose backup disk is full.
    fleet.ssh(failing, f"dd if=/dev/zero of={TARGET}/filler bs=1M status=none; df -h {TARGET}", check=False)
    since = _now()
    # Ask for an incremental on every host even though the last one is fresh, so that
    # the healthy hosts show that they really backed up while the others failed.
    r = site("isolation", fleetsafe_policy={"incremental_interval_minutes": 0})
    assert r.rc != 0, "a run with failed hosts must not exit 0"
    for h in healthy:
        assert r.stats[h]["failures"] == 0 and r.stats[h]["unreachable"] == 0, r.summary()
    assert r.stats[down]["unreachable"] or r.stats[down]["failures"], r.summary()
    assert r.stats[failing]["failures"], r.summary()

    summary = r.custom_stats.get("fleetsafe_run_summary")
    assert summary, f"no fleetsafe_run_summary in set_stats: {r.custom_stats}"
    assert summary["failed"] == 2 and sorted(summary["failed_hosts"]) == sorted([down, failing]), summary
    assert summary["ok"] == len(healthy) and summary["hosts"] == len(healthy) + 2, summary

    rows = report()
    assert sorted(rows) == sorted(healthy + [down, failing]), rows
    for h in healthy:
        assert_fresh_backup(fleet, h, since, rows[h])
    assert rows[down]["status"] == "red" and "unreachable" in reasons(rows[down]).lower(), rows[down]
    why = reasons(rows[failing]).lower()
    assert rows[failing]["status"] == "red" and ("space" in why or "full" in why), rows[failing]
