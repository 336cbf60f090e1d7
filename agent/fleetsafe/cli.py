"""The ``fleetsafe`` command line: argparse, ``--json`` documents, exit codes, audit events.

Contract (docs/cli.md is the reference; keep it true):

* With ``--json`` stdout carries exactly one JSON document, always with
  ``schema_version: 1``; on failure it is ``{"schema_version": 1, "error":
  kind, "message": ..., "exit_code": N, ...}``.  Logs and progress go to
  stderr; progress only when stderr is a terminal.
* The exit code is the ``exit_code`` of the ``FleetsafeError`` that ended the
  run (errors.py), 3 for a ``partial`` result, 5 for a damaged repository.
* Every action that touches the repository or keys -- init, backup, ls,
  snapshots, restore, verify, replicate, key create/recovery-create --
  appends one audit event (AUD-LOG, AC-LOG), success or not; a wrong or
  unreadable key is logged with status ``denied``.  ``status``, ``audit``
  and ``selftest`` only read local state and are not logged when they
  succeed.

The subcommands live in ``fleetsafe.commands`` (one ``cmd_*`` function each,
returning an ``Outcome``); this module does the shared work: parsing, error
documents, the audit event, the exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from fleetsafe import __version__
from fleetsafe.audit import utc_now
from fleetsafe.commands import (
    Audit,
    Ctx,
    Outcome,
    _audit_log,
    _sources,
    cmd_audit,
    cmd_backup,
    cmd_init,
    cmd_key_create,
    cmd_key_help,
    cmd_key_recovery_create,
    cmd_ls,
    cmd_repair,
    cmd_replicate,
    cmd_restore,
    cmd_selftest,
    cmd_snapshots,
    cmd_status,
    cmd_verify,
)
from fleetsafe.config import AgentConfig
from fleetsafe.errors import (
    FleetsafeError,
    KeyError_,
    NoMatchingKeySlot,
    RestoreRefused,
    UsageError,
)

SCHEMA_VERSION = 1

log = logging.getLogger("fleetsafe")

__all__ = ["Audit", "Ctx", "Outcome", "build_parser", "main"]


class Interrupted(FleetsafeError):
    template = "interrupted by signal {signal}"
    kind = "interrupted"


# --- argument parsing -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (exit 2, JSON error document) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the subcommand.  On subparsers the defaults are SUPPRESS so a
    # value given before the subcommand is not reset by the subparser.
    d: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--config", metavar="PATH", help="agent configuration (default /etc/fleetsafe/agent.yml, env FLEETSAFE_CONFIG)", **d)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout", **d)
    p.add_argument("--target", metavar="NAME", help="act on this target instead of the primary one", **d)
    p.add_argument("--recovery-key", metavar="PATH",
                   help="open the repository with the organisation's recovery private key (passphrase from FLEETSAFE_PASSPHRASE_FILE or stdin)", **d)
    p.add_argument("-v", "--verbose", action="count", help="more log output on stderr", **({"default": 0} if top else d))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fleetsafe", description="fleetsafe backup agent (docs/cli.md)")
    parser.add_argument("--version", action="version", version=f"fleetsafe {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, func: Callable[[Ctx], Outcome], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _global_options(p, top=False)
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "create the repository on the target (idempotent)")
    p = add("backup", cmd_backup, "take a snapshot (FREQ-FULL / FREQ-INCR)")
    p.add_argument("--type", choices=("full", "incremental"), default="incremental", dest="backup_type")
    p.add_argument("--source", action="append", metavar="PATH", help="back up this absolute path instead of the configured sources")
    p = add("snapshots", cmd_snapshots, "list snapshots, oldest first")
    _no_lock_option(p)
    p = add("ls", cmd_ls, "list the entries of a snapshot")
    p.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("--include", action="append", metavar="PATH", default=[], help="only PATH and what is below it")
    p.add_argument("--limit", type=_nonneg_int, default=1000, metavar="N", help="at most N entries (0 = all; default 1000)")
    _no_lock_option(p)
    add("replicate", cmd_replicate, "copy new objects to the other targets (LOC-OFFSITE, LOC-CLOUD)")
    p = add("restore", cmd_restore, "restore a snapshot (REST-SAFE)")
    p.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("--target-dir", metavar="DIR", help="restore below DIR (default: a fresh dir under <state_dir>/restore)")
    p.add_argument("--include", action="append", metavar="PATH", default=[], help="restore only PATH (and what is below it)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files (never writes through symlinks)")
    p.add_argument("--sample", type=_positive_int, metavar="N",
                   help="VER-SAMPLE: restore N random files, hash them and compare with the live files")
    _no_lock_option(p)
    p = add("verify", cmd_verify, "check the repository (VER-CHECKSUM, ENC-TEST)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--read-data", action="store_true", help="decrypt and authenticate every blob")
    g.add_argument("--read-data-subset", metavar="PERCENT", type=_percent, help="decrypt and authenticate PERCENT of the packs")
    _no_lock_option(p)
    p = add("repair", cmd_repair, "quarantine damaged packs so the next backup stores their data again")
    p.add_argument("--dry-run", action="store_true", help="only report what would be quarantined")
    p = add("audit", cmd_audit, "read the audit log (AUD-LOG)")
    p.add_argument("--since", type=_nonneg_int, default=0, metavar="SEQ", help="events with seq > SEQ")
    p.add_argument("--verify-chain", action="store_true", help="check the hash chain; exit 5 when broken")
    add("status", cmd_status, "last backups, snapshot count, key slots, lock")
    add("selftest", cmd_selftest, "known-answer tests and a backup/restore round trip (seconds)")
    p = add("key", cmd_key_help, "create keys")
    ksub = p.add_subparsers(dest="key_command", metavar="KEYCMD", parser_class=_Parser)
    ksub.required = True
    kp = ksub.add_parser("create", help="create the host key file (never overwrites)")
    _global_options(kp, top=False)
    kp.add_argument("--file", metavar="PATH", help="key file (default: key_file from the configuration)")
    kp.set_defaults(func=cmd_key_create)
    kp = ksub.add_parser("recovery-create", help="create the organisation's recovery key pair")
    _global_options(kp, top=False)
    kp.add_argument("--private", metavar="PATH", required=True)
    kp.add_argument("--public", metavar="PATH", required=True)
    kp.set_defaults(func=cmd_key_recovery_create)
    return parser


def _no_lock_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-lock", action="store_true",
                   help="do not take the shared repository lock (read-only media; taken automatically when the "
                        "lock cannot be written)")


def _percent(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number 0..100, got {text!r}") from None
    if not 0 < v <= 100:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100], got {text}")
    return v


def _positive_int(text: str) -> int:
    v = _nonneg_int(text)
    if v == 0:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("expected a non-negative integer")
    return v


# --- output, audit, main -------------------------------------------------------------------------


def _emit(ctx_json: bool, doc: dict[str, Any], text: Callable[[dict[str, Any]], str] | None) -> None:
    if ctx_json:
        out = json.dumps({"schema_version": SCHEMA_VERSION, **doc}, ensure_ascii=False, default=_json_default)
        sys.stdout.write(out + "\n")
    elif "error" in doc and text is None:
        sys.stderr.write(f"fleetsafe: {doc['message']}\n")
        for p in (doc.get("problems") or [])[:20]:
            sys.stderr.write(f"  {p.get('object')}: {p.get('problem')}\n")
    elif text is not None:
        sys.stdout.write(text(doc) + "\n")
    else:
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(obj: object) -> object:
    if isinstance(obj, bytes):
        from fleetsafe.pathnames import display_path

        return display_path(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _audit_append(cfg: AgentConfig | None, audit: Audit) -> str | None:
    """Append; on failure return a warning text instead of failing the action that was done."""
    if cfg is None:
        return "audit event not written: configuration not loaded"
    try:
        _audit_log(cfg).append(audit.action, audit.status, start=audit.start, end=audit.end,
                               data_sets=audit.data_sets, details=audit.details, errors=audit.errors)
    except FleetsafeError as exc:
        log.error("audit event not written: %s", exc)
        return f"audit event not written: {exc}"
    return None


def _failure_status(exc: BaseException) -> str:
    special = getattr(exc, "audit_status", None)
    if special:
        return str(special)  # "locked" (an overlapping run did nothing); "denied" (wrong passphrase)
    # AC-LOG: a key that does not open the repository, or a key/file we may not read, is a denied attempt.
    if isinstance(exc, (NoMatchingKeySlot, PermissionError)):
        return "denied"
    if isinstance(exc, KeyError_) and "Permission denied" in str(exc):
        return "denied"
    if isinstance(exc, RestoreRefused):
        return "refused"  # REST-SAFE did its job: a refusal, not a crash
    return "failure"


_AUDITED = {"init", "backup", "snapshots", "ls", "restore", "verify", "repair", "replicate", "key"}


def _action_name(args: argparse.Namespace | None) -> str | None:
    if args is None:
        return None
    cmd = getattr(args, "command", None)
    return "key" if cmd == "key" else cmd


class _JournalFormatter(logging.Formatter):
    """``<N>`` syslog priority prefixes when stderr goes to the journal (M7)."""

    _PRIO: ClassVar[dict[int, int]] = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRIO.get(record.levelno, 6)}>{super().format(record)}"


def _setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = "fleetsafe: %(levelname)s: %(message)s"
    handler.setFormatter(_JournalFormatter(fmt) if os.environ.get("JOURNAL_STREAM") else logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING)


def _on_signal(signum: int, _frame: object) -> None:
    # Raised in the main thread: context managers release the local and repository locks.
    raise Interrupted(signal=signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in argv
    args: argparse.Namespace | None = None
    ctx: Ctx | None = None
    outcome: Outcome
    old_term = signal.signal(signal.SIGTERM, _on_signal)
    try:
        try:
            args = build_parser().parse_args(argv)
            _setup_logging(getattr(args, "verbose", 0) or 0)
            ctx = Ctx(args)
            outcome = args.func(ctx)
        except FleetsafeError as exc:
            outcome = _error_outcome(exc, exc.exit_code, exc.to_dict(), getattr(exc, "extra", None))
            outcome.audit = _failure_audit(args, ctx, exc)
        except KeyboardInterrupt as exc:
            outcome = _error_outcome(exc, 1, {"error": "interrupted", "message": "interrupted", "exit_code": 1}, None)
            outcome.audit = _failure_audit(args, ctx, exc)
        except OSError as exc:
            # An OS error nobody translated (state dir, target dir ...): name it, keep the contract.
            msg = f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
            outcome = _error_outcome(exc, 1, {"error": "os_error", "message": msg, "exit_code": 1}, None)
            outcome.audit = _failure_audit(args, ctx, exc)
        except Exception as exc:  # a bug: the traceback goes to stderr, and the caller
            # (an Ansible module) still gets its one JSON document and the audit log its event.
            log.critical("internal error, please report it", exc_info=exc)
            outcome = _error_outcome(exc, 1, {"error": "internal", "message": f"internal error: {type(exc).__name__}: {exc}",
                                              "exit_code": 1}, None)
            outcome.audit = _failure_audit(args, ctx, exc)
        if outcome.audit is not None:
            if ctx is not None and "key" in ctx.audit_details:
                # AC-LOG "key use": which key slot opened the repository (fingerprint only).
                outcome.audit.details.setdefault("key", ctx.audit_details["key"])
            cfg = None
            cfg_exc: FleetsafeError | None = None
            if ctx is not None:
                try:
                    cfg = ctx.cfg
                except FleetsafeError as e:
                    cfg, cfg_exc = None, e
            warning = _audit_append(cfg, outcome.audit)
            if warning and cfg is None and outcome.audit.action == "key":
                # `key create --file` runs before agent.yml exists (or without --config): the event
                # is lost, so say it on stderr in human mode too, not only in the JSON warnings.
                log.warning("%s%s", warning, f" ({cfg_exc})" if cfg_exc else "")
            if warning and "error" not in outcome.doc:
                outcome.doc.setdefault("warnings", []).append(warning)
        outcome.doc.setdefault("exit_code", outcome.exit_code)
        _emit(json_mode or bool(ctx and ctx.json), outcome.doc, outcome.text)
        return outcome.exit_code
    finally:
        signal.signal(signal.SIGTERM, old_term)


def _error_outcome(exc: BaseException, code: int, doc: dict[str, Any], extra: dict[str, Any] | None) -> Outcome:
    log.debug("error", exc_info=exc)
    d = dict(doc)
    if extra:
        d.update(extra)
    d["exit_code"] = code
    return Outcome(d, code, None, None)


def _failure_audit(args: argparse.Namespace | None, ctx: Ctx | None, exc: BaseException) -> Audit | None:
    action = _action_name(args)
    if action not in _AUDITED or ctx is None:
        return None
    details: dict[str, Any] = {"error": getattr(exc, "kind", type(exc).__name__)}
    details.update(getattr(ctx, "audit_details", {}) or {})
    if action == "backup":
        details["type"] = getattr(args, "backup_type", None)
    data_sets: list[str] = []
    try:
        if action == "backup":
            data_sets = _sources(ctx)
    except FleetsafeError:
        data_sets = []
    message = str(exc) or type(exc).__name__
    return Audit(action, _failure_status(exc), ctx.started, utc_now(), data_sets=data_sets, details=details,
                 errors=[{"error": message}])
