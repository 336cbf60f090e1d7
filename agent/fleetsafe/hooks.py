"""Backup hooks: commands run before and after a backup (database dumps, snapshots of VMs).

Contract:

* A hook is an argv list (or a string split with ``shlex``, never a shell):
  the agent runs as root from a root-only configuration, so no shell
  expansion, no injection through values.
* ``before_backup`` hooks run in order after the host lock is taken (two
  overlapping timer runs never dump a database twice at once); the first
  one that fails or times out stops the run with ``HookFailed`` (exit 1,
  nothing is backed up: a backup of a half-written dump would look fine and
  be useless).
* ``after_backup`` hooks always run, also after a failed backup, with
  ``FLEETSAFE_BACKUP_STATUS`` (``success``/``partial``/``failure``) and
  ``FLEETSAFE_SNAPSHOT_ID`` in their environment; a failing after hook is a
  warning, never a change of the backup's result.
* Hook output goes to the agent's stderr (the journal), prefixed with the
  hook; the JSON result records only argv[0], exit code and duration --
  dump tools print connection strings.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fleetsafe.errors import FleetsafeError

log = logging.getLogger(__name__)


class HookFailed(FleetsafeError):
    template = "{phase} hook {command} failed: {msg}"
    kind = "hook_failed"


def run_hook(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run one hook; return ``{"command", "rc", "seconds"}`` (rc None on timeout or start failure)."""
    t0 = time.monotonic()
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    result: dict[str, Any] = {"command": argv[0], "rc": None}
    try:
        p = subprocess.run(list(argv), env=full_env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout, check=False)
        result["rc"] = p.returncode
        for stream in (p.stdout, p.stderr):
            for line in stream.decode("utf-8", "replace").splitlines()[-50:]:
                log.info("hook %s: %s", argv[0], line)
    except subprocess.TimeoutExpired:
        result["error"] = f"timed out after {timeout:g} s"
    except OSError as exc:
        result["error"] = exc.strerror or str(exc)
    result["seconds"] = round(time.monotonic() - t0, 3)
    if result["rc"] not in (0, None):
        result["error"] = f"exit code {result['rc']}"
    return result


def run_before(hooks: Sequence[Sequence[str]], *, timeout: float) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    for argv in hooks:
        r = run_hook(argv, timeout=timeout)
        done.append(r)
        if "error" in r:
            raise HookFailed(r["error"], phase="before_backup", command=argv[0])
    return done


def run_after(hooks: Sequence[Sequence[str]], *, timeout: float, status: str, snapshot_id: str | None) -> list[dict[str, Any]]:
    env = {"FLEETSAFE_BACKUP_STATUS": status, "FLEETSAFE_SNAPSHOT_ID": snapshot_id or ""}
    return [run_hook(argv, timeout=timeout, env=env) for argv in hooks]
