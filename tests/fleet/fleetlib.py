"""Helpers of the container-fleet tests: run ansible-playbook and molecule, read results.

Imported by conftest.py and the test modules; the fixtures are in conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "fleet"))

from fleetctl import Fleet  # noqa: F401  (re-exported for the tests)

BUILD = REPO / "build"
# The tests' own wheel set: build/wheels is rebuilt by `make wheels`/`make demo` whenever
# the agent changes, which would make a converge and its idempotence run disagree.
WHEELS = BUILD / "fleet-wheels"
IMAGE = os.environ.get("FLEET_IMAGE", "localhost/fleetsafe-host:bookworm")
VENV_BIN = Path(sys.executable).parent
SITE = Path(os.environ.get("FLEET_SITE_PLAYBOOK", REPO / "playbooks" / "site.yml"))


def ansible_env(collections_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path),
        "ANSIBLE_FORCE_COLOR": "0",
        "NO_COLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_PIPELINING": "True",
        "FLEET_IMAGE": IMAGE,
        "FLEET_WHEELS_DIR": str(WHEELS),
    })
    env.update(extra)
    return env


@dataclass
class PlayResult:
    """One ``ansible-playbook`` run, as recorded by callback_plugins/fleet_record.py."""

    rc: int
    stats: dict[str, dict[str, int]]
    custom_stats: dict
    tasks: list[dict]
    log: Path
    seconds: float

    def changed(self, host: str) -> int:
        return self.stats[host]["changed"]

    def failed_hosts(self) -> set[str]:
        return {h for h, s in self.stats.items() if s["failures"] or s["unreachable"]}

    def changed_tasks(self, host: str) -> list[str]:
        return [t["task"] for t in self.tasks if t["host"] == host and t["changed"]]

    def summary(self) -> str:
        lines = [f"rc={self.rc} in {self.seconds:.0f} s, log {self.log}"]
        lines += [f"  {h}: {s}" for h, s in self.stats.items()]
        lines += [f"  set_stats: {json.dumps(self.custom_stats)[:1500]}"]
        lines += [f"  {t['host']}: {t['status']}: {t['task']}: {t['msg'][:300]}"
                  for t in self.tasks if t["status"] in ("failed", "unreachable")]
        return "\n".join(lines)


def run_playbook(playbook: Path, inventory: Path, env: dict[str, str], log: Path,
                 extra_vars: dict | None = None, timeout: float = 900) -> PlayResult:
    """Run ``ansible-playbook``; its human output goes to ``log``, the facts to assert on
    come from the fleet_record callback (stats, changed tasks, failures, set_stats)."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    log.parent.mkdir(parents=True, exist_ok=True)
    record = log.with_suffix(".json")
    record.unlink(missing_ok=True)
    env = dict(env, ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).parent / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="fleet_record", FLEET_RECORD_FILE=str(record),
               ANSIBLE_SHOW_CUSTOM_STATS="True")
    t0 = time.monotonic()
    with open(log, "w") as out:
        p = subprocess.run(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                           timeout=timeout, check=False)
    seconds = time.monotonic() - t0
    if not record.exists():
        raise AssertionError(f"ansible-playbook rc={p.returncode} ended before its recap; "
                             f"last output ({log}):\n{log.read_text()[-4000:]}")
    doc = json.loads(record.read_text())
    return PlayResult(rc=p.returncode, stats=doc["stats"], custom_stats=doc["global_custom_stats"],
                      tasks=doc["tasks"], log=log, seconds=seconds)


# ---------------------------------------------------------------- molecule
@dataclass
class MoleculeRun:
    scenario: str
    proc: subprocess.Popen | None
    log: Path
    started: float
    rc: int | None = None
    seconds: float = 0.0

    def wait(self, timeout: float) -> MoleculeRun:
        if self.rc is None and self.proc is not None:
            try:
                self.rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.rc = self.proc.wait()
            self.seconds = time.monotonic() - self.started
        return self

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


class MoleculeRuns:
    """``molecule test -s <scenario>`` for each selected scenario; started together
    (or one by one with FLEET_MOLECULE_PARALLEL=0)."""

    def __init__(self, scenarios: list[str], env: dict[str, str]) -> None:
        self.env = env
        self.parallel = os.environ.get("FLEET_MOLECULE_PARALLEL", "1") != "0"
        self.runs: dict[str, MoleculeRun] = {}
        self.pending = list(scenarios)
        if self.parallel:
            for s in scenarios:
                self._start(s)

    def _start(self, scenario: str) -> MoleculeRun:
        log = BUILD / "test-logs" / f"molecule-{scenario}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen([str(VENV_BIN / "molecule"), "test", "-s", scenario], cwd=REPO,
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT)
        run = MoleculeRun(scenario, proc, log, time.monotonic())
        self.runs[scenario] = run
        return run

    def result(self, scenario: str, timeout: float = 1200) -> MoleculeRun:
        run = self.runs.get(scenario) or self._start(scenario)
        return run.wait(timeout)

    def stop(self) -> None:
        for run in self.runs.values():
            if run.proc and run.proc.poll() is None:
                run.proc.terminate()
                try:
                    run.proc.wait(30)
                except subprocess.TimeoutExpired:
                    run.proc.kill()
