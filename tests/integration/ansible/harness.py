"""Helpers for tests that run real ansible-playbook against this machine.

* the working tree is linked as the collection ``fleetsafe.backup`` under
  build/collections (TESTBED §2: never a copy in ~/.ansible);
* the wheel set the role installs from is built once per test process from
  the working tree (``ensure_wheels``);
* playbooks run with a small recording callback (callback_plugins/) so that
  tests read the recap (``stats``) and task results instead of scraping text.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from collection_link import COLLECTIONS, link_collection

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent


_WHEELS: Path | None = None


def ensure_wheels() -> Path:
    """A wheel set of this test process, built once from the working tree.

    Not build/wheels: `make demo` or another test run may rebuild that while a
    test converges twice, and a changed set would make the second converge
    reinstall (a false idempotence failure).  FLEETSAFE_TEST_WHEELS points at a
    ready set instead (tools/build-wheels.sh output)."""
    global _WHEELS
    if _WHEELS is None:
        given = os.environ.get("FLEETSAFE_TEST_WHEELS")
        if given:
            _WHEELS = Path(given)
        else:
            (ROOT / "build").mkdir(exist_ok=True)
            out = Path(tempfile.mkdtemp(prefix="test-wheels-", dir=ROOT / "build")) / "wheels"
            atexit.register(shutil.rmtree, out.parent, True)
            subprocess.run([str(ROOT / "tools" / "build-wheels.sh"), str(out)], cwd=ROOT, check=True,
                           env={**os.environ, "PIP": str(VENV_BIN / "pip")}, capture_output=True)
            _WHEELS = out
    return _WHEELS


def agent_cmd() -> list[str]:
    return [sys.executable, "-m", "fleetsafe"]


def agent_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "agent") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def make_recovery_key(directory: Path) -> Path:
    """An organisation recovery key pair made by the agent itself; returns the public key."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    passphrase = directory / "passphrase"
    passphrase.write_text("test passphrase, not a secret\n")
    passphrase.chmod(0o600)
    pub = directory / "recovery.pub"
    if not pub.exists():
        subprocess.run([*agent_cmd(), "key", "recovery-create", "--private", str(directory / "recovery.key"),
                        "--public", str(pub)], check=True, env=agent_env(FLEETSAFE_PASSPHRASE_FILE=str(passphrase)),
                       stdin=subprocess.DEVNULL, capture_output=True)
    return pub


class PlaybookRun:
    def __init__(self, proc: subprocess.CompletedProcess[str], record: Path):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        try:
            self.doc: dict[str, Any] = json.loads(record.read_text())
        except (OSError, ValueError):
            self.doc = {}

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        return self.doc.get("stats", {})

    def changed(self, host: str = "localhost") -> int:
        return self.stats.get(host, {}).get("changed", -1)

    def failures(self, host: str = "localhost") -> int:
        s = self.stats.get(host, {})
        return s.get("failures", 0) + s.get("unreachable", 0)

    def tasks(self, host: str = "localhost") -> list[dict[str, Any]]:
        """Task results in order: task (name), status (ok/failed/skipped/unreachable), changed, msg."""
        return [t for t in self.doc.get("tasks", []) if t["host"] == host]

    def ran(self, host: str = "localhost") -> list[str]:
        return [t["task"] for t in self.tasks(host) if t["status"] != "skipped"]

    def changed_tasks(self, host: str = "localhost") -> list[str]:
        return [t["task"] for t in self.tasks(host) if t["changed"]]

    def failed_tasks(self, host: str = "localhost") -> list[tuple[str, str]]:
        return [(t["task"], t["msg"]) for t in self.tasks(host) if t["status"] == "failed"]

    def explain(self) -> str:
        return (f"rc={self.rc} stats={self.stats}\nfailed={self.failed_tasks()}\n"
                f"changed={self.changed_tasks()}\nstdout={self.stdout[-4000:]}\nstderr={self.stderr[-2000:]}")


def run_playbook(playbook: Path, inventory: Path, *args: str, extra_vars: dict[str, Any] | None = None,
                 timeout: int = 600) -> PlaybookRun:
    link_collection()
    fd, record_name = tempfile.mkstemp(prefix="fleetsafe-record-", suffix=".json")
    os.close(fd)
    record = Path(record_name)
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_CALLBACK_PLUGINS": str(Path(__file__).resolve().parent / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "fleetsafe_record",
        "FLEETSAFE_RECORD_FILE": str(record),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *args]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    try:
        proc = subprocess.run(argv, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        return PlaybookRun(proc, record)
    finally:
        record.unlink(missing_ok=True)


def write_inventory(path: Path, host_vars: dict[str, Any]) -> Path:
    hv = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
          "ansible_become": False, **host_vars}
    path.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": hv}}}, sort_keys=False))
    return path


def sandbox_vars(root: Path, recovery_pub: Path, sources: list[str]) -> dict[str, Any]:
    """Role variables that keep every file of the agent role under ``root``."""
    for d in ("bin", "cron.d", "logrotate.d", "systemd"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return {
        "fleetsafe_agent_wheels_dir": str(ensure_wheels()),
        "fleetsafe_agent_install_dir": str(root / "opt"),
        "fleetsafe_agent_bin_link": str(root / "bin" / "fleetsafe"),
        "fleetsafe_agent_config_dir": str(root / "etc"),
        "fleetsafe_agent_state_dir": str(root / "state"),
        "fleetsafe_agent_audit_log": str(root / "log" / "audit.jsonl"),
        "fleetsafe_agent_sources": sources,
        "fleetsafe_agent_targets": [{"name": "onsite", "url": str(root / "repo"), "primary": True}],
        "fleetsafe_agent_recovery_public_key_src": str(recovery_pub),
        "fleetsafe_agent_scheduler": "cron",
        "fleetsafe_agent_cron_file": str(root / "cron.d" / "fleetsafe"),
        "fleetsafe_agent_logrotate_file": str(root / "logrotate.d" / "fleetsafe"),
        "fleetsafe_agent_systemd_unit_dir": str(root / "systemd"),
    }


def slowest(run: PlaybookRun, n: int = 8) -> list[tuple[float, str]]:
    """The n slowest task results (for diagnosing a slow suite)."""
    return sorted(((t.get("seconds", 0.0), t["full_name"]) for t in run.tasks()), reverse=True)[:n]
