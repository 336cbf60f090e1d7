"""What a CLI run needs from the host: target backends, keys, the repository, the local lock.

Contract:

* ``open_target(target)`` opens the storage backend of one configured target
  through ``fleetsafe.storage.url.open_backend`` (the storage layer owns URL
  parsing and backend options).
* ``open_repository(cfg, backend, recovery_key=...)`` unlocks with the host
  key from ``cfg.key_file`` or, when given, the organisation's recovery
  private key (restoring a dead host's backups on new hardware).
* ``local_lock(cfg)`` is an exclusive, non-blocking ``flock`` on
  ``<state_dir>/agent.lock``: an overlapping timer run fails at once with
  ``LockedError`` (exit 4) instead of queueing behind a long backup.  The
  kernel drops the lock when the process dies, even on ``kill -9``, so it can
  never go stale; the repository lock (``repo.lock``) additionally guards
  against other hosts and other state dirs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fleetsafe.config import AgentConfig, TargetConfig
from fleetsafe.errors import KeyFileError, LockedError, UsageError
from fleetsafe.storage.base import Backend

PASSPHRASE_FILE_ENV = "FLEETSAFE_PASSPHRASE_FILE"


def target_dict(target: TargetConfig) -> dict[str, Any]:
    return {"name": target.name, "url": target.url, "primary": target.primary, **target.options}


def open_target(target: TargetConfig) -> Backend:
    from fleetsafe.storage.url import open_backend

    return open_backend(target_dict(target))


def ensure_state_dir(cfg: AgentConfig) -> Path:
    try:
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UsageError(f"state_dir {cfg.state_dir}: {exc.strerror or exc}") from exc
    return cfg.state_dir


@contextlib.contextmanager
def local_lock(cfg: AgentConfig, *, shared: bool = False) -> Iterator[None]:
    """Hold ``<state_dir>/agent.lock`` (exclusive, or shared for readers) without waiting."""
    ensure_state_dir(cfg)
    path = cfg.lock_file
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UsageError(f"lock file {path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                holder = _read_holder(fd)
                raise LockedError(holder=f"another fleetsafe run on this host{holder} ({path})") from None
            raise
        if not shared:
            # Who holds it, for the next run's message; the lock itself is the flock, not this text.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def is_locally_locked(cfg: AgentConfig) -> bool:
    """True when another process holds ``agent.lock`` (for ``status``)."""
    try:
        fd = os.open(cfg.lock_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def read_passphrase() -> bytes:
    """The recovery key passphrase: from ``$FLEETSAFE_PASSPHRASE_FILE``, else one line of stdin.

    Never from the command line or an environment value: both leak through
    ``ps``, ``/proc/<pid>/environ`` and job logs.
    """
    path = os.environ.get(PASSPHRASE_FILE_ENV)
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KeyFileError(exc.strerror or str(exc), path=path) from exc
    else:
        import sys

        if sys.stdin is None or sys.stdin.closed:
            raise KeyFileError("no passphrase: set FLEETSAFE_PASSPHRASE_FILE or pipe it on stdin", path="-")
        if sys.stdin.isatty():
            import getpass

            data = getpass.getpass("recovery key passphrase: ").encode()
        else:
            data = sys.stdin.buffer.readline()
    data = data.rstrip(b"\r\n")
    if not data:
        raise KeyFileError("empty passphrase", path=path or "-")
    return data


def open_repository(cfg: AgentConfig, backend: Backend, *, recovery_key: str | None = None) -> tuple[Any, dict[str, str]]:
    """Unlock the repository on ``backend`` with the host key (or the recovery private key).

    Returns the repository and which key opened it (``{"type", "fingerprint"}``, no
    secret) for the audit event: using the recovery key is itself an event worth seeing.
    """
    from fleetsafe import keys
    from fleetsafe.repo import Repository

    if recovery_key:
        private = keys.load_recovery_private(recovery_key, read_passphrase())
        used = {"type": "recovery", "fingerprint": keys.recovery_fingerprint(private)}
        return Repository.open(backend, recovery_private=private, host=cfg.host), used
    host_key = load_host_key(cfg)
    used = {"type": "host", "fingerprint": keys.host_fingerprint(host_key)}
    return Repository.open(backend, host_key=host_key, host=cfg.host), used


def load_host_key(cfg: AgentConfig) -> bytes:
    from fleetsafe import keys

    try:
        return keys.load_host_key(cfg.key_file)
    except KeyFileError as exc:
        if "does not exist" in str(exc):
            raise KeyFileError("does not exist (create it with 'fleetsafe key create')", path=str(cfg.key_file)) from exc
        raise
