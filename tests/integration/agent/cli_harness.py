"""CLI-level harness: a whole agent (config, key, repository, audit log) in a temp dir.

A module with its own name rather than ``conftest``: several test directories
have a conftest.py, and ``from conftest import ...`` would pick whichever was
imported first when the whole suite runs.

Everything runs the real ``fleetsafe`` command as a subprocess
(``python -m fleetsafe`` with ``PYTHONPATH=agent``), exactly as the
collection's modules call it, as the current user -- root is not needed.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
AGENT_DIR = REPO_ROOT / "agent"


@dataclass
class Result:
    rc: int
    doc: dict[str, Any]
    stdout: str
    stderr: str


@dataclass
class Agent:
    """One host's agent in ``base``: ``src/`` to back up, ``repo/`` target, ``state/``, ``audit.jsonl``."""

    base: Path
    config: Path
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)

    @property
    def src(self) -> Path:
        return self.base / "src"

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def audit_log(self) -> Path:
        return self.base / "log" / "audit.jsonl"

    def argv(self, *args: str, json_out: bool = True) -> list[str]:
        return [*self.prefix, sys.executable, "-m", "fleetsafe", "--config", str(self.config),
                *(["--json"] if json_out else []), *args]

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), env=self.env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kw)

    def run(self, *args: str, expect: int | None = 0, json_out: bool = True, timeout: float = 120,
            input: str | None = None) -> Result:
        p = subprocess.run(self.argv(*args, json_out=json_out), env=self.env, text=True, capture_output=True,
                           timeout=timeout, input=input, check=False)
        doc: dict[str, Any] = {}
        if json_out:
            # The contract: exactly one JSON document on stdout, nothing else.
            assert p.stdout.count("\n") == 1, f"stdout is not one line: {p.stdout!r} (stderr: {p.stderr})"
            doc = json.loads(p.stdout)
            assert doc["schema_version"] == 1
            assert doc["exit_code"] == p.returncode
        if expect is not None:
            assert p.returncode == expect, f"rc={p.returncode}, expected {expect}\nstdout={p.stdout}\nstderr={p.stderr}"
        return Result(p.returncode, doc, p.stdout, p.stderr)

    def events(self) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line.strip()]

    def packs(self) -> list[Path]:
        return sorted(p for p in (self.repo / "packs").rglob("*") if p.is_file() and not p.name.startswith("."))


def write_config(base: Path, **over: Any) -> Path:
    cfg: dict[str, Any] = {
        "version": 1,
        "host": "testhost",
        "key_file": str(base / "keys" / "repo.key"),
        "state_dir": str(base / "state"),
        "audit_log": str(base / "log" / "audit.jsonl"),
        "sources": [str(base / "src")],
        "exclude": ["*.skip"],
        "one_file_system": True,
        "targets": [{"name": "onsite", "url": str(base / "repo"), "primary": True}],
    }
    cfg.update(over)
    path = base / "agent.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def make_agent(base: Path, *, init: bool = True, **over: Any) -> Agent:
    base.mkdir(parents=True, exist_ok=True)
    (base / "src").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETSAFE_")}
    env["PYTHONPATH"] = str(AGENT_DIR)
    env["FLEETSAFE_TRIGGER"] = "cli"
    agent = Agent(base, write_config(base, **over), env)
    if init:
        # In-process, through the same APIs `key create` / `init` use: each CLI start costs
        # ~0.5 s, and test_agent_cli.py runs the real commands.
        from fleetsafe import keys
        from fleetsafe.repo import Repository
        from fleetsafe.storage.local import LocalBackend

        (base / "keys").mkdir(mode=0o700, exist_ok=True)
        host_key = keys.create_host_key(base / "keys" / "repo.key")
        Repository.init(LocalBackend(base / "repo"), host_key=host_key, recovery_public=None, host="testhost")
    return agent


# --- tree comparison --------------------------------------------------------------------------


def tree_state(root: Path, *, owners: bool = False) -> dict[bytes, tuple[Any, ...]]:
    """Everything restore must reproduce, per relative byte path (hard links by inode groups)."""
    out: dict[bytes, tuple[Any, ...]] = {}
    inodes: dict[int, bytes] = {}
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, broot)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    extra = fh.read()
                if st.st_nlink > 1:
                    first = inodes.setdefault(st.st_ino, rel)
                    extra = (extra, first)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(full)
            mtime = None if stat.S_ISDIR(st.st_mode) and False else st.st_mtime_ns
            xattrs: tuple[tuple[str, bytes], ...] = ()
            if not stat.S_ISLNK(st.st_mode):
                try:
                    xattrs = tuple((n, os.getxattr(full, n)) for n in sorted(os.listxattr(full))
                                   if n != "security.selinux")
                except OSError:
                    xattrs = ()
            row: tuple[Any, ...] = (kind, stat.S_IMODE(st.st_mode), mtime, extra, xattrs)
            if owners:
                row += (st.st_uid, st.st_gid)
            out[rel] = row
    return out


def restored_root(target_dir: Path, src: Path) -> Path:
    """Where ``src`` lands inside a restore target (entry paths are relative to /)."""
    return target_dir / str(src).lstrip("/")
