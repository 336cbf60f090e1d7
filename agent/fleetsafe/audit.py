"""The host's append-only, hash-chained audit log (AUD-LOG, AC-LOG, AUD-ACCESS).

Contract (docs/cli.md, "The audit event"): one JSON object per line::

    {"v": 1, "seq": N, "ts": "...Z", "host": ..., "actor": {"user", "uid", "via"},
     "action": ..., "status": ..., "start": ..., "end": ..., "data_sets": [...],
     "details": {...}, "errors": [...], "prev": "<hash of seq N-1>", "hash": "<hex>"}

    hash = SHA-256(canonical JSON of the event without "hash")
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

Invariants:

* ``seq`` starts at 1 and grows by exactly one per event; ``prev`` of event 1
  is 64 zeros.  Because ``prev`` is inside the hashed object, editing,
  removing or reordering any line breaks the chain at that line, and
  ``verify_chain`` names the first bad ``seq``.
* Appends happen under an exclusive ``flock`` on the log file, so two agents
  (a timer run and an Ansible run) never write the same ``seq`` twice.  The
  line is written with one ``write`` on an ``O_APPEND`` descriptor and
  fsynced before the action is reported as done.
* The file is created mode 0640 with the group of its directory (AUD-ACCESS: the
  role makes ``/var/log/fleetsafe`` root:adm 0750, so auditors in ``adm`` can
  read the log the agent creates there; so does a head file next to it).
* A head file (``<log>.head``, or one in the state dir) remembers the last
  ``seq`` and ``hash``: it lets the chain continue across log rotation and
  makes a truncated tail detectable (removing the last lines would otherwise
  leave a valid, shorter chain).
* Callers pass only non-secret details; this module never sees key material.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pwd
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fleetsafe.errors import FleetsafeError

EVENT_VERSION = 1
GENESIS = "0" * 64
TRIGGER_ENV = "FLEETSAFE_TRIGGER"
AWX_JOB_ENV = "FLEETSAFE_AWX_JOB_ID"
TRIGGERS = ("timer", "ansible", "cli")

#: statuses an event may carry (AUD-LOG: success / partial / failure; AC-LOG: denied;
#: locked: another run held the lock, nothing was attempted)
STATUSES = ("success", "partial", "failure", "denied", "damaged", "refused", "locked")


class AuditError(FleetsafeError):
    template = "audit log {path}: {msg}"
    kind = "audit"


def utc_now() -> str:
    """ISO-8601 UTC with microseconds and a ``Z`` (the event ``ts`` format)."""
    # timezone.utc, not datetime.UTC: the agent still runs on Python 3.9 hosts (pyproject).
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: UP017


def canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_hash(event: dict[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def current_actor() -> dict[str, Any]:
    """Who is acting: the real uid (not the effective one) and how we were started (AC-LOG)."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    via = os.environ.get(TRIGGER_ENV, "cli")
    if via not in TRIGGERS:
        via = "cli"
    actor: dict[str, Any] = {"user": user, "uid": uid, "via": via}
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and uid == 0:
        actor["sudo_user"] = sudo_user
    job = os.environ.get(AWX_JOB_ENV, "").strip()
    if job:
        # Only an identifier: keep it short and printable, never arbitrary env content.
        actor["awx_job_id"] = job[:64]
    return actor


def _adopt_dir_group(fd: int, directory: Path) -> None:
    """Give a file we just created the group of its directory, mode 0640 (AUD-ACCESS).

    Without this the log is root:root 0640 inside a root:adm 0750 directory and the
    auditors in ``adm`` cannot read it.  Best effort: a user may only chown to a group
    it is in, and the log must be written anyway.
    """
    try:
        gid = os.stat(directory).st_gid
        if os.fstat(fd).st_gid != gid:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, 0o640)  # chown may clear bits; and umask may have narrowed the mode
    except OSError:
        pass


@dataclass
class ChainReport:
    ok: bool
    first_seq: int | None
    last_seq: int | None
    head_hash: str
    events: int
    error: str | None = None
    bad_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_ok": self.ok,
            "chain_error": self.error,
            "bad_seq": self.bad_seq,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head_hash": self.head_hash,
            "events_checked": self.events,
        }


class AuditLog:
    """Append to and read one audit log file."""

    def __init__(self, path: str | os.PathLike[str], host: str, *, head_file: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.host = host
        self.head_file = Path(head_file) if head_file else self.path.with_name(self.path.name + ".head")

    # --- writing -----------------------------------------------------------------

    def _open_for_append(self) -> int:
        flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        created = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o640)
                created = True
            except FileExistsError:
                fd = os.open(self.path, flags | os.O_CREAT, 0o640)
        except OSError as exc:
            raise AuditError(exc.strerror or str(exc), path=str(self.path)) from exc
        if created:
            _adopt_dir_group(fd, self.path.parent)
        try:
            st = os.fstat(fd)
            if st.st_size == 0 and (st.st_mode & 0o777) != 0o640 and st.st_uid == os.geteuid():
                # umask may have narrowed or (with 0o000) kept our mode; make it exactly 0640.
                os.fchmod(fd, 0o640)
        except OSError:
            pass
        return fd

    def _read_head_file(self) -> tuple[int, str] | None:
        try:
            data = json.loads(self.head_file.read_text(encoding="utf-8"))
            return int(data["seq"]), str(data["hash"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_head_file(self, seq: int, digest: str) -> None:
        tmp = self.head_file.with_name(f".{self.head_file.name}.{secrets.token_hex(4)}")
        try:
            self.head_file.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
            try:
                if self.head_file.parent == self.path.parent:
                    _adopt_dir_group(fd, self.head_file.parent)  # readable like the log next to it
                os.write(fd, json.dumps({"seq": seq, "hash": digest}).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.head_file)
        except OSError:
            # The head file is a convenience for rotation/truncation detection; the log itself is
            # the record, so a failure here must not fail the action that was audited.
            try:
                tmp.unlink()
            except OSError:
                pass

    @staticmethod
    def _last_line(fd: int) -> bytes | None:
        """The last complete (newline-terminated) line, read backwards in blocks.

        A torn tail without a newline (a crash mid-write) is not a line: the
        next append terminates it and ``verify_chain`` reports it.
        """
        pos = os.fstat(fd).st_size
        buf = b""
        while pos > 0:
            start = max(0, pos - 8192)
            buf = os.pread(fd, pos - start, start) + buf
            pos = start
            end = buf.rfind(b"\n")
            if end < 0:
                continue
            begin = buf.rfind(b"\n", 0, end)
            if begin >= 0:
                return buf[begin + 1 : end]
            if pos == 0:
                return buf[:end]
        return None

    def append(
        self,
        action: str,
        status: str,
        *,
        start: str | None = None,
        end: str | None = None,
        data_sets: list[str] | None = None,
        details: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
        actor: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one event and return it (with ``seq`` and ``hash``)."""
        fd = self._open_for_append()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            prev_seq, prev_hash = 0, GENESIS
            last = self._last_line(fd)
            if last is not None:
                try:
                    obj = json.loads(last)
                    prev_seq, prev_hash = int(obj["seq"]), str(obj["hash"])
                except (ValueError, KeyError, TypeError) as exc:
                    head = self._read_head_file()
                    if head is None:
                        raise AuditError(f"last line is not an audit event ({exc}); run 'fleetsafe audit --verify-chain'", path=str(self.path)) from exc
                    # A damaged last line must not stop every later action from being
                    # audited: chain on from the head file; verify_chain still flags it.
                    prev_seq, prev_hash = head
            else:
                head = self._read_head_file()
                if head is not None:
                    # The log was rotated: continue the chain where the old file ended.
                    prev_seq, prev_hash = head
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")  # terminate a torn line so ours parses on its own
            now = utc_now()
            event: dict[str, Any] = {
                "v": EVENT_VERSION,
                "seq": prev_seq + 1,
                "ts": now,
                "host": self.host,
                "actor": actor if actor is not None else current_actor(),
                "action": action,
                "status": status,
                "start": start or now,
                "end": end or now,
                "data_sets": list(data_sets or []),
                "details": dict(details or {}),
                "errors": list(errors or []),
                "prev": prev_hash,
            }
            event["hash"] = event_hash(event)
            line = canonical(event) + b"\n"
            written = os.write(fd, line)
            if written != len(line):
                raise AuditError(f"short write ({written} of {len(line)} bytes)", path=str(self.path))
            os.fsync(fd)
            self._write_head_file(event["seq"], event["hash"])
            return event
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise AuditError("disk full", path=str(self.path)) from exc
            raise AuditError(exc.strerror or str(exc), path=str(self.path)) from exc
        finally:
            os.close(fd)

    # --- reading -------------------------------------------------------------------

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuditError(exc.strerror or str(exc), path=str(self.path)) from exc
        with os.fdopen(fd, "rb") as fh:
            # Shared lock: never read a line an appender is half-way through writing.
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            for lineno, raw in enumerate(fh, 1):
                if raw.strip():
                    yield lineno, raw.rstrip(b"\n")

    def events(self, since: int = 0) -> Iterator[dict[str, Any]]:
        """Events with ``seq > since``; unparsable lines are skipped (verify_chain names them)."""
        for _lineno, raw in self._lines():
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("seq"), int) and obj["seq"] > since:
                yield obj

    def verify_chain(self) -> ChainReport:
        """Check every link; report the first bad ``seq`` (AUD-LOG, tamper-evident)."""
        first: int | None = None
        last: int | None = None
        prev_hash = GENESIS
        count = 0

        def bad(seq: int | None, msg: str) -> ChainReport:
            return ChainReport(False, first, last, prev_hash, count, error=msg, bad_seq=seq)

        for lineno, raw in self._lines():
            expected_seq = (last + 1) if last is not None else None
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise TypeError("not an object")
                seq = obj["seq"]
                digest = obj["hash"]
                prev = obj["prev"]
                if not isinstance(seq, int) or not isinstance(digest, str) or not isinstance(prev, str):
                    raise TypeError("seq/hash/prev have wrong types")
            except (ValueError, KeyError, TypeError) as exc:
                return bad(expected_seq, f"line {lineno}: not an audit event ({exc})")
            if digest != event_hash(obj):
                return bad(seq, f"line {lineno}: seq {seq}: hash does not match the event (edited)")
            if last is None:
                # The first line of the file: either the genesis or a rotated file continuing a chain.
                if seq == 1 and prev != GENESIS:
                    return bad(seq, f"line {lineno}: seq 1 must have prev = 64 zeros")
                first = seq
            else:
                if seq != last + 1:
                    return bad(last + 1, f"line {lineno}: expected seq {last + 1}, got {seq} (removed or reordered)")
                if prev != prev_hash:
                    return bad(seq, f"line {lineno}: seq {seq}: prev does not match the hash of seq {last}")
            last = seq
            prev_hash = digest
            count += 1
        head = self._read_head_file()
        if head is not None and last is not None and (head[0] > last or (head[0] == last and head[1] != prev_hash)):
            return bad(last + 1 if head[0] > last else last, f"log ends at seq {last} but the head file records seq {head[0]} (truncated or replaced)")
        return ChainReport(True, first, last, prev_hash, count)
