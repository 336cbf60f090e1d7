"""What the agent role leaves on a real host, checked on the host itself.

Run by molecule's testinfra verifier over SSH. Nothing here trusts the role's own
reports: files are stat'ed, timers are asked of systemd, schedules are expanded by
``systemd-analyze calendar``, and a backup is restored and compared byte for byte.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import shlex

import pytest

CONFIG = "/etc/fleetsafe/agent.yml"
KEYS = "/etc/fleetsafe/keys"
AGENT = "/usr/local/bin/fleetsafe"
TIMERS = ("fleetsafe-full.timer", "fleetsafe-incremental.timer", "fleetsafe-verify.timer")
PROBE = "/srv/fleetsafe-probe"
RESTORE = "/var/tmp/fleetsafe-probe-restore"


def agent(host, *args: str) -> dict:
    """Run the agent with --json and return its document (any exit code)."""
    r = host.run(f"FLEETSAFE_TRIGGER=cli {AGENT} --json {' '.join(shlex.quote(a) for a in args)}")
    assert r.stdout.strip(), f"fleetsafe {args} printed nothing (rc={r.rc}): {r.stderr[-2000:]}"
    doc = json.loads(r.stdout)
    doc["_rc"] = r.rc
    return doc


# ------------------------------------------------------------------ files and modes
@pytest.mark.parametrize("path, mode", [
    (CONFIG, 0o600),
    (f"{KEYS}/repo.key", 0o600),
    (f"{KEYS}/recovery.pub", 0o644),
])
def test_file_owned_by_root_with_mode(host, path, mode):
    f = host.file(path)
    assert f.exists and f.is_file, path
    assert (f.user, f.group) == ("root", "root")
    assert f.mode == mode, f"{path}: mode {oct(f.mode)}, expected {oct(mode)}"


def test_key_directory_is_private(host):
    d = host.file(KEYS)
    assert d.is_directory and d.user == "root" and d.mode == 0o700


def test_host_key_is_32_random_bytes(host):
    raw = host.check_output(f"base64 -d {KEYS}/repo.key | wc -c")
    assert raw.strip() == "32"


def test_audit_log_readable_by_root_and_adm_only(host):
    d = host.file("/var/log/fleetsafe")
    assert d.user == "root" and d.group == "adm" and d.mode == 0o750


def test_agent_runs_from_its_venv(host):
    link = host.file(AGENT)
    assert link.is_symlink and link.linked_to.startswith("/opt/fleetsafe/venv/")
    assert host.run(f"{AGENT} --help").rc == 0


# ------------------------------------------------------------------ timers
def _on_calendar(host, timer: str) -> str:
    shown = host.check_output(f"systemctl show -p TimersCalendar --value {timer}")
    m = re.search(r"OnCalendar=(.+?) ;", shown)
    assert m, f"{timer}: no OnCalendar in {shown!r}"
    return m.group(1).strip()


def _elapses(host, expr: str, n: int) -> list[dt.datetime]:
    """The next ``n`` times ``expr`` elapses, computed by systemd on the host (UTC)."""
    out = host.check_output(
        f"SYSTEMD_COLORS=0 TZ=UTC systemd-analyze calendar --iterations={n} {shlex.quote(expr)}")
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+):\s+\w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", out)
    assert len(stamps) == n, out
    return [dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S") for s in stamps]


@pytest.mark.parametrize("timer", TIMERS)
def test_timer_enabled_and_waiting(host, timer):
    t = host.service(timer)
    assert t.is_enabled, f"{timer} not enabled"
    assert t.is_running, f"{timer} not active"
    assert host.check_output(f"systemctl show -p Unit --value {timer}") == timer.replace(".timer", ".service")


@pytest.mark.parametrize("timer", TIMERS)
def test_timer_catch_up_and_spread(host, timer):
    """Persistent=true catches up missed runs; a bounded random delay spreads the fleet."""
    props = dict(line.split("=", 1) for line in host.check_output(
        f"systemctl show -p Persistent -p RandomizedDelayUSec -p FixedRandomDelay {timer}").splitlines())
    assert props["Persistent"] == "yes"
    assert props["FixedRandomDelay"] == "yes"
    delay = props["RandomizedDelayUSec"]
    assert delay not in ("0", "infinity", ""), f"{timer}: no random delay"
    # systemd prints e.g. "10min" or "20min"; the bound is below the incremental period
    minutes = sum(int(v) * {"h": 60, "min": 1, "s": 1 / 60}[u]
                  for v, u in re.findall(r"(\d+)(h|min|s)\b", delay))
    assert 0 < minutes <= 30, f"{timer}: RandomizedDelaySec {delay}"


def test_full_backup_is_weekly(host):
    """FREQ-FULL: exactly one full run per week, always the same weekday and time."""
    expr = _on_calendar(host, "fleetsafe-full.timer")
    runs = _elapses(host, expr, 4)
    assert all(b - a == dt.timedelta(days=7) for a, b in itertools.pairwise(runs)), (expr, runs)


def test_verify_is_daily(host):
    """VER-CHECKSUM: the scheduled verify runs once a day."""
    expr = _on_calendar(host, "fleetsafe-verify.timer")
    runs = _elapses(host, expr, 4)
    assert all(b - a == dt.timedelta(days=1) for a, b in itertools.pairwise(runs)), (expr, runs)


def test_incremental_backup_is_hourly_in_office_hours(host):
    """FREQ-INCR: hourly, every day, covering 08:00-20:00 (not a minute range: M6)."""
    expr = _on_calendar(host, "fleetsafe-incremental.timer")
    runs = _elapses(host, expr, 60)
    by_day: dict[dt.date, list[dt.datetime]] = {}
    for r in runs:
        by_day.setdefault(r.date(), []).append(r)
    full_days = [d for d in sorted(by_day)[1:-1]]  # first/last day may be cut by "now"
    assert full_days, runs
    for d in full_days:
        day = by_day[d]
        gaps = {b - a for a, b in itertools.pairwise(day)}
        assert gaps == {dt.timedelta(hours=1)}, f"{expr}: {day}"
        assert 11 <= len(day) <= 13, f"{expr}: {len(day)} runs on {d}"
        assert day[0].hour in (8, 9) and day[-1].hour in (19, 20), f"{expr}: {day[0]}..{day[-1]}"


def test_schedule_follows_the_host_group(host):
    """Servers keep the role's policy defaults; workstations take group_vars/workstations.yml."""
    groups = host.ansible.get_variables().get("group_names", [])
    full = _on_calendar(host, "fleetsafe-full.timer")
    incr = _on_calendar(host, "fleetsafe-incremental.timer")
    if "workstations" in groups:
        assert (full, incr) == ("Mon *-*-* 12:30:00", "*-*-* 08..19:30:00")
    else:
        assert (full, incr) == ("Sun *-*-* 02:00:00", "*-*-* 08..20:00:00")


# ------------------------------------------------------------------ a real round trip
def test_backup_restore_checksums_match(host):
    """Back up a tree with awkward names and random content, restore it elsewhere and
    compare every file's SHA-256 and every symlink target."""
    host.run_test(
        f"rm -rf {PROBE} {RESTORE} && mkdir -p '{PROBE}/sub dir/deeper' && cd {PROBE}"
        " && head -c 3000000 /dev/urandom > big.bin"
        " && head -c 70000 /dev/urandom > 'sub dir/médium ü.bin'"
        " && printf 'hello\\n' > 'sub dir/deeper/small.txt' && : > empty"
        " && ln -s 'sub dir/deeper/small.txt' link && chmod 0640 big.bin")
    b = agent(host, "backup", "--type", "full", "--source", PROBE)
    assert b["_rc"] == 0 and b["status"] == "success", b
    sid = b["snapshot_id"]
    listed = agent(host, "snapshots")
    assert sid in [s["id"] for s in listed["snapshots"]]

    r = agent(host, "restore", sid, "--target-dir", RESTORE)
    assert r["_rc"] == 0 and r["status"] == "success", r
    restored = RESTORE + PROBE  # paths are kept below the target dir
    manifest = ("cd {} && find . -type f -print0 | sort -z | xargs -0 sha256sum"
                " && find . -type l -printf '%p -> %l\\n' | sort && stat -c '%n %a' big.bin")
    original = host.check_output(manifest.format(shlex.quote(PROBE)))
    copy = host.check_output(manifest.format(shlex.quote(restored)))
    assert copy == original
    assert "big.bin" in original and "link -> sub dir/deeper/small.txt" in original


def test_repository_verifies_with_read_data(host):
    v = agent(host, "verify", "--read-data")
    assert v["_rc"] == 0 and v["status"] == "ok", v
    assert v["blobs_checked"] > 0
