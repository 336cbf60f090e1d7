"""The subcommands of ``fleetsafe``: one ``cmd_*`` function each, returning an ``Outcome``.

Contract: a command returns the document it produced (without
``schema_version``; ``cli.main`` adds it), its exit code, the audit event to
append (``Audit``, or None for read-only local commands) and a renderer for
people.  Commands raise ``FleetsafeError`` subclasses for failures; ``cli.main``
turns those into error documents, exit codes and failure events.  Nothing here
prints.  See docs/cli.md for every document.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetsafe.audit import AuditLog, utc_now
from fleetsafe.config import AgentConfig, load_config, resolve_config_path
from fleetsafe.errors import (
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_PARTIAL,
    FleetsafeError,
    RepositoryNotFound,
    UsageError,
)
from fleetsafe.progress import Progress

#: audit events keep at most this many per-path errors (the JSON result has them all)
AUDIT_ERRORS_MAX = 100

log = logging.getLogger("fleetsafe")


@dataclass
class Audit:
    """What one run appends to the audit log."""

    action: str
    status: str
    start: str
    end: str
    data_sets: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Outcome:
    doc: dict[str, Any]
    exit_code: int = EXIT_OK
    audit: Audit | None = None
    text: Callable[[dict[str, Any]], str] | None = None


class Ctx:
    """Per-run state shared by the subcommands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json: bool = bool(getattr(args, "json", False))
        self.started = utc_now()
        self._cfg: AgentConfig | None = None
        self.progress = Progress()
        #: set by a command as soon as it knows them, so a failure event still names them
        self.audit_details: dict[str, Any] = {}

    @property
    def cfg(self) -> AgentConfig:
        if self._cfg is None:
            self._cfg = load_config(resolve_config_path(getattr(self.args, "config", None)))
        return self._cfg

    @property
    def cfg_loaded(self) -> AgentConfig | None:
        return self._cfg

    def target(self) -> Any:
        return self.cfg.target(getattr(self.args, "target", None))


# --- shared helpers --------------------------------------------------------------------------


def _base(ctx: Ctx, action: str) -> dict[str, Any]:
    cfg = ctx.cfg
    t = ctx.target()
    return {"action": action, "host": cfg.host, "target": t.name}


def _open_repo(ctx: Ctx) -> tuple[Any, Any]:
    from fleetsafe.runtime import open_repository, open_target

    backend = open_target(ctx.target())
    try:
        repo, used = open_repository(ctx.cfg, backend, recovery_key=getattr(ctx.args, "recovery_key", None))
    except BaseException:
        backend.close()
        raise
    ctx.audit_details["key"] = used
    return backend, repo


def _snapshot_summary(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": m["id"],
        "short_id": m["id"][:12],
        "type": m.get("type"),
        "start": m.get("start"),
        "end": m.get("end"),
        "host": m.get("host"),
        "paths": m.get("paths") or [],
        "status": m.get("status"),
        "parent": m.get("parent"),
        "stats": m.get("stats") or {},
        "policy_scope": m.get("policy_scope", True) is not False,  # older snapshots: no field = true
    }


def _sources(ctx: Ctx) -> list[str]:
    given = getattr(ctx.args, "source", None)
    if not given:
        return list(ctx.cfg.sources)
    out = []
    for s in given:
        if not s.startswith("/") or any(p in (".", "..") for p in s.split("/")):
            raise UsageError(f"--source {s!r}: expected an absolute path without '.' or '..'")
        out.append("/" + "/".join(p for p in s.split("/") if p))
    return out


# --- subcommands ---------------------------------------------------------------------------


def cmd_init(ctx: Ctx) -> Outcome:
    from fleetsafe import keys
    from fleetsafe.repo import Repository
    from fleetsafe.runtime import load_host_key, local_lock, open_target

    cfg = ctx.cfg
    doc = _base(ctx, "init")
    with local_lock(cfg):
        backend = open_target(ctx.target())
        try:
            host_key = load_host_key(cfg)
            ctx.audit_details["key"] = {"type": "host", "fingerprint": keys.host_fingerprint(host_key)}
            recovery = keys.load_recovery_public(cfg.recovery_public_key) if cfg.recovery_public_key else None
            added: list[str] = []
            try:
                repo = Repository.open(backend, host_key=host_key, host=cfg.host)
                created = False
                if recovery is not None:
                    fp = keys.recovery_fingerprint(recovery)
                    if fp not in {s["fingerprint"] for s in repo.slots()}:
                        # The configured recovery key must be able to open every repository.
                        added.append(repo.add_recovery_slot(recovery))
            except RepositoryNotFound:
                repo = Repository.init(backend, host_key=host_key, recovery_public=recovery, host=cfg.host)
                created = True
            slots = repo.slots()
        finally:
            backend.close()
    doc.update(repository=repo.id, created=created, location=backend.location, key_slots=slots, slots_added=added)
    audit = Audit("init", "success", ctx.started, utc_now(), details={
        "repository": repo.id, "created": created, "target": doc["target"],
        "key_slots": [s.get("fingerprint") for s in slots], "slots_added": added})
    return Outcome(doc, EXIT_OK, audit, text=lambda d: f"repository {d['repository']} on {d['location']}: "
                   + ("created" if d["created"] else "already initialised"))


def cmd_backup(ctx: Ctx) -> Outcome:
    from fleetsafe.backup import BackupRequest, run_backup
    from fleetsafe.hooks import run_after, run_before
    from fleetsafe.runtime import local_lock

    cfg = ctx.cfg
    doc = _base(ctx, "backup")
    sources = _sources(ctx)
    # FREQ-FULL: only a backup of exactly the configured sources is the policy's (weekly) full.
    scope = sorted(set(sources)) == sorted(set(cfg.sources))
    ctx.audit_details["policy_scope"] = scope
    req = BackupRequest(host=cfg.host, sources=sources, backup_type=ctx.args.backup_type,
                        exclude=cfg.exclude + _own_excludes(cfg), one_file_system=cfg.one_file_system,
                        policy_scope=scope)
    hooks = cfg.hooks
    hook_runs: list[dict[str, Any]] = []
    with local_lock(cfg):
        status, snapshot_id = "failure", None
        try:
            hook_runs += run_before(hooks.before_backup, timeout=hooks.timeout)
            backend, repo = _open_repo(ctx)
            try:
                with repo.lock(exclusive=True):
                    result = run_backup(repo, req, progress=ctx.progress.backup if ctx.progress.enabled else None)
                status, snapshot_id = result.status, result.snapshot_id
                ctx.progress.done()
                # LOC-OFFSITE / LOC-CLOUD: copy the new immutable objects to every other target.  A
                # target that is down makes the run partial; the snapshot on this target stays.
                replication = _replicate_all(ctx, backend, exclude=ctx.target().name)
            finally:
                ctx.progress.done()
                backend.close()
        finally:
            # After hooks run whatever happened (restart a service stopped for the dump ...).
            after = run_after(hooks.after_backup, timeout=hooks.timeout, status=status, snapshot_id=snapshot_id)
            hook_runs += after
            ctx.audit_details["hooks"] = hook_runs
    doc["repository"] = repo.id
    body = result.to_dict()
    doc.update(body)
    doc["replication"] = replication
    if hook_runs:
        doc["hooks"] = hook_runs
    for h in after:
        if "error" in h:
            result.warnings.append(f"after_backup hook {h['command']}: {h['error']}")
    for rep in replication:
        if not rep["ok"]:
            result.errors.append({"target": rep["target"], "error": rep.get("error") or "replication incomplete"})
    if result.errors and result.status == "success":
        result.status = doc["status"] = "partial"
    code = EXIT_PARTIAL if result.status == "partial" else EXIT_OK
    audit = Audit("backup", result.status, result.start, result.end, data_sets=list(sources), details={
        "snapshot_id": result.snapshot_id, "type": result.type, "policy_scope": result.policy_scope,
        "parent": result.parent, "target": doc["target"],
        "repository": repo.id, "files": result.files, "bytes_read": result.bytes_read,
        "bytes_added": result.bytes_added, "bytes_stored": result.bytes_stored,
        "duration_seconds": result.duration_seconds, "warnings": result.warnings[:AUDIT_ERRORS_MAX],
        **({"hooks": hook_runs} if hook_runs else {})},
        errors=result.errors[:AUDIT_ERRORS_MAX])
    return Outcome(doc, code, audit, text=_text_backup)


def _own_excludes(cfg: AgentConfig) -> tuple[str, ...]:
    """The agent's own bulk data is never backed up: local repositories (a backup of ``/`` would
    otherwise copy the repository into itself, growing every run) and restore staging dirs."""
    import glob

    paths = [str(cfg.restore_dir)]
    for t in cfg.targets:
        url = t.url
        url = url.removeprefix("file://")
        if url.startswith("/"):
            paths.append("/" + "/".join(p for p in url.split("/") if p))
    # glob.escape: a literal path, even if it contains *, ? or [ (fnmatch syntax)
    return tuple(glob.escape(p) for p in paths)


def _replicate_all(ctx: Ctx, src: Any, *, exclude: str) -> list[dict[str, Any]]:
    """Replicate ``src`` to every other enabled target; one result per target, never raises for a target."""
    from fleetsafe.replicate import replicate
    from fleetsafe.runtime import open_target

    out: list[dict[str, Any]] = []
    for t in ctx.cfg.targets:
        if t.name == exclude or t.options.get("enabled", True) is False or t.options.get("replicate", True) is False:
            continue
        rep: dict[str, Any] = {"target": t.name, "ok": False}
        try:
            dst = open_target(t)
            try:
                r = replicate(src, dst)
            finally:
                dst.close()
            rep.update(ok=bool(r["ok"]), copied=r["copied"], bytes=r["bytes"], seconds=r["seconds"])
            if not r["ok"]:
                rep["error"] = (f"corrupt: {len(r['corrupt'])}, conflicts: {len(r['conflicts'])}, "
                                f"held back: {r['held']}")
        except FleetsafeError as exc:
            rep["error"] = str(exc)
            log.warning("replication to %s failed: %s", t.name, exc)
        out.append(rep)
    return out


def cmd_replicate(ctx: Ctx) -> Outcome:
    from fleetsafe.runtime import local_lock, open_target

    doc = _base(ctx, "replicate")
    with local_lock(ctx.cfg):
        src = open_target(ctx.target())
        try:
            reps = _replicate_all(ctx, src, exclude=ctx.target().name)
        finally:
            src.close()
    ok = all(r["ok"] for r in reps)
    doc.update(status="success" if ok else "partial", replication=reps,
               errors=[{"target": r["target"], "error": r.get("error", "")} for r in reps if not r["ok"]])
    audit = Audit("replicate", doc["status"], ctx.started, utc_now(), details={
        "source": doc["target"], "targets": [r["target"] for r in reps],
        "copied": sum(int(r.get("copied", 0)) for r in reps), "bytes": sum(int(r.get("bytes", 0)) for r in reps)},
        errors=doc["errors"])
    return Outcome(doc, EXIT_OK if ok else EXIT_PARTIAL, audit, text=lambda d: "\n".join(
        f"{r['target']}: {'ok' if r['ok'] else 'FAILED'} {r.get('copied', 0)} objects, {r.get('bytes', 0)} bytes"
        + (f" ({r['error']})" if r.get("error") else "") for r in d["replication"]) or "no other targets")


def _text_backup(d: dict[str, Any]) -> str:
    from fleetsafe.progress import human_bytes

    lines = [f"snapshot {d['snapshot_id'][:12]} ({d['type']}, {d['status']}) of {', '.join(d['data_sets'])}",
             (f"  {d['files']} files ({d['files_reused']} unchanged), {d['dirs']} dirs, {human_bytes(d['bytes_read'])} read, "
              f"{human_bytes(d['bytes_added'])} new, {human_bytes(d['bytes_stored'])} stored in {d['duration_seconds']} s")]
    lines += [f"  error: {e.get('path') or 'target ' + str(e.get('target'))}: {e['error']}" for e in d["errors"]]
    lines += [f"  warning: {w}" for w in d["warnings"]]
    return "\n".join(lines)


def cmd_snapshots(ctx: Ctx) -> Outcome:
    doc = _base(ctx, "snapshots")
    backend, repo = _open_repo(ctx)
    try:
        snaps = [_snapshot_summary(m) for m in repo.list_snapshots()]
    finally:
        backend.close()
    doc.update(repository=repo.id, snapshots=snaps)
    audit = Audit("snapshots", "success", ctx.started, utc_now(), details={"repository": repo.id, "count": len(snaps)})
    return Outcome(doc, EXIT_OK, audit, text=_text_snapshots)


def _text_snapshots(d: dict[str, Any]) -> str:
    rows = [f"{'ID':12}  {'TYPE':11}  {'STATUS':8}  {'START':20}  PATHS"]
    for s in d["snapshots"]:
        rows.append(f"{s['short_id']:12}  {s['type'] or '?':11}  {s['status'] or '?':8}  {s['start'] or '?':20}  {' '.join(s['paths'])}")
    rows.append(f"{len(d['snapshots'])} snapshot(s) in repository {d['repository']}")
    return "\n".join(rows)


def cmd_ls(ctx: Ctx) -> Outcome:
    import datetime

    from fleetsafe.pathnames import display_path
    from fleetsafe.restore import normalise_include

    args = ctx.args
    doc = _base(ctx, "ls")
    incl = [p for p in (normalise_include(i) for i in args.include) if p]
    backend, repo = _open_repo(ctx)
    try:
        snap = _latest_snapshot_id(repo, ctx.cfg.host) if args.snapshot == "latest" else args.snapshot
        manifest = repo.load_snapshot(snap)
        entries: list[dict[str, Any]] = []
        count = 0
        for e in repo.read_tree(list(manifest.get("tree") or [])):
            path = e["path"]
            if incl and not any(path == p or path.startswith(p + b"/") for p in incl):
                continue
            count += 1
            if args.limit and len(entries) >= args.limit:
                continue  # keep counting: the document says how many were left out
            mtime = int(e.get("mtime_ns", 0))
            item = {"path": display_path(b"/" + path), "type": e.get("type"), "size": e.get("size", 0),
                    "mode": f"{int(e.get('mode', 0)):04o}", "user": e.get("user") or str(e.get("uid")),
                    "group": e.get("group") or str(e.get("gid")),
                    "mtime": datetime.datetime.fromtimestamp(mtime / 1e9, datetime.timezone.utc)  # noqa: UP017
                    .strftime("%Y-%m-%dT%H:%M:%SZ")}
            if e.get("type") in ("symlink", "hardlink") and isinstance(e.get("target"), bytes):
                item["target"] = display_path(e["target"] if e["type"] == "symlink" else b"/" + e["target"])
            entries.append(item)
    finally:
        backend.close()
    doc.update(repository=repo.id, snapshot=manifest["id"], snapshot_time=manifest.get("start"), entries=entries,
               count=count, truncated=count > len(entries))
    audit = Audit("ls", "success", ctx.started, utc_now(), data_sets=[_show(p) for p in incl],
                  details={"repository": repo.id, "snapshot_id": manifest["id"], "count": count})
    return Outcome(doc, EXIT_OK, audit, text=lambda d: "\n".join(
        [f"{x['mode']} {x['user']:>8} {x['group']:>8} {x['size']:>12} {x['mtime']} {x['path']}"
         + (f" -> {x['target']}" if "target" in x else "") for x in d["entries"]]
        + ([f"... {d['count'] - len(d['entries'])} more (--limit 0 for all)"] if d["truncated"] else [])))


def _latest_snapshot_id(repo: Any, host: str) -> str:
    from fleetsafe.errors import SnapshotNotFound

    snaps = [s for s in repo.list_snapshots() if s.get("host") == host] or repo.list_snapshots()
    if not snaps:
        raise SnapshotNotFound(snapshot="latest")
    return str(snaps[-1]["id"])


def _is_read_only_error(exc: BaseException) -> bool:
    """The target refuses writes because it is read-only or we may not write there."""
    import errno

    if getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM):
        return True
    text = str(exc)
    return any(t in text for t in ("Read-only file system", "Permission denied", "Operation not permitted",
                                   "AccessDenied"))


def _shared_lock(ctx: Ctx, repo: Any, warnings: list[str]) -> Any:
    """The shared repository lock of a read-only command, or none.

    With ``--no-lock``, or when the lock object cannot be written because the
    target is read-only or permission-denied (disaster recovery from a
    write-protected disk), the command runs without a lock and says so in
    ``warnings`` and on stderr.  Any other lock failure (locked, target down) stands.
    """
    import contextlib

    from fleetsafe.errors import StorageError

    if getattr(ctx.args, "no_lock", False):
        msg = "--no-lock: running without the repository lock (a concurrent prune could remove data being read)"
        log.warning("%s", msg)
        warnings.append(msg)
        return contextlib.nullcontext()
    lk = repo.lock(exclusive=False)
    try:
        lk.acquire()
    except StorageError as exc:
        if not _is_read_only_error(exc):
            raise
        msg = (f"repository lock not taken, the target is not writable ({exc}): "
               "running without a lock (read-only access)")
        log.warning("%s", msg)
        warnings.append(msg)
        return contextlib.nullcontext()
    return _Held(lk)


class _Held:
    """Context manager releasing an already acquired lock."""

    def __init__(self, lk: Any) -> None:
        self.lk = lk

    def __enter__(self) -> Any:
        return self.lk

    def __exit__(self, *exc: object) -> None:
        self.lk.release()


def cmd_restore(ctx: Ctx) -> Outcome:
    import shutil

    from fleetsafe.restore import restore_snapshot
    from fleetsafe.runtime import ensure_state_dir
    from fleetsafe.sample import choose_sample, compare_samples

    cfg = ctx.cfg
    args = ctx.args
    doc = _base(ctx, "restore")
    samples: list[dict[str, Any]] | None = None
    include: list[Any] = list(args.include)
    lock_warnings: list[str] = []
    backend, repo = _open_repo(ctx)
    try:
        with _shared_lock(ctx, repo, lock_warnings):
            snap = args.snapshot
            if snap == "latest":
                snap = _latest_snapshot_id(repo, cfg.host)
            manifest = repo.load_snapshot(snap)
            if args.target_dir:
                target_dir = Path(args.target_dir)
            else:
                # REST-SAFE "controlled environment": a fresh staging directory, never the live path.
                ensure_state_dir(cfg)
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                target_dir = cfg.restore_dir / f"{manifest['id'][:12]}-{stamp}"
                n = 1
                while target_dir.exists():
                    target_dir = cfg.restore_dir / f"{manifest['id'][:12]}-{stamp}-{n}"
                    n += 1
            if args.sample:
                picked = choose_sample(repo.read_tree(list(manifest.get("tree") or [])), args.sample, include)
                if not picked:
                    raise UsageError("--sample: the snapshot holds no regular file to sample")
                include = [e["path"] for e in picked]
            ctx.audit_details.update({"snapshot_id": manifest["id"], "target_dir": str(target_dir),
                                      "include": [_show(p) for p in include], "overwrite": bool(args.overwrite)})
            result = restore_snapshot(repo, manifest["id"], target_dir, include=include, overwrite=args.overwrite,
                                      progress=ctx.progress.restore if ctx.progress.enabled else None)
            if args.sample:
                samples = compare_samples(target_dir, picked)
                if not args.target_dir:
                    # The evidence is the document and the audit event; the staging copy of a
                    # routine sample would only pile up under the state dir.
                    shutil.rmtree(target_dir, ignore_errors=True)
                    result["target_dir_removed"] = True
    finally:
        ctx.progress.done()
        backend.close()
    doc["repository"] = repo.id
    doc.update(result)
    if lock_warnings:
        doc["warnings"] = lock_warnings + list(doc.get("warnings") or [])
    code = EXIT_PARTIAL if result["status"] == "partial" else EXIT_OK
    status = result["status"]
    details: dict[str, Any] = {
        "snapshot_id": result["snapshot"], "target_dir": result["target_dir"], "files": result["files"],
        "bytes": result["bytes"], "duration_seconds": result["duration_seconds"], "snapshot_time": result["snapshot_time"],
        "overwrite": bool(args.overwrite), "include": [_show(p) for p in include][:AUDIT_ERRORS_MAX],
        "repository": repo.id, "target": doc["target"]}
    errors = list(result["errors"][:AUDIT_ERRORS_MAX])
    if samples is not None:
        differs = [s for s in samples if s.get("live") in ("differs", "not_restored")]
        doc.update(samples=samples, sample_ok=not differs)
        details["sample"] = {k: sum(1 for s in samples if s.get("live") == k)
                             for k in ("match", "differs", "changed", "missing", "unreadable", "not_restored")}
        errors += [{"path": s["path"], "error": f"sample {s['live']}: restored copy does not match the unchanged live file"
                    if s["live"] == "differs" else f"sample {s['live']}"} for s in differs]
        if differs:
            # VER-SAMPLE found damage: the restored copy of an unchanged file differs.
            code, status = EXIT_INTEGRITY, "damaged"
            doc["status"] = status
        counts = details["sample"]
        compared = counts["match"] + counts["differs"]
        others = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in ("changed", "missing", "unreadable", "not_restored")
                           if counts[k])
        doc["sample_verdict"] = (f"{'DAMAGED' if differs else 'OK'}: {len(samples)} file(s) sampled, {compared} compared "
                                 f"with the unchanged live file, {counts['differs']} differ"
                                 + (f", {counts['not_restored']} not restored" if counts["not_restored"] else "")
                                 + (f" (not comparable: {others})" if others else ""))
        details["sample_verdict"] = doc["sample_verdict"]
    audit = Audit("restore", status, result["start"], result["end"], data_sets=list(result["data_sets"]), details=details,
                  errors=errors)
    return Outcome(doc, code, audit, text=_text_restore)


def _text_restore(d: dict[str, Any]) -> str:
    if "samples" in d:
        where = "staging copy removed" if d.get("target_dir_removed") else f"restored copies in {d['target_dir']}"
        lines = [f"sample restore of snapshot {d['snapshot'][:12]} ({where})"]
        lines += [f"  {s['live']:12} {s['path']}" for s in d["samples"]]
        lines.append(d["sample_verdict"])
    else:
        lines = [(f"restored snapshot {d['snapshot'][:12]} into {d['target_dir']}: {d['files']} files, {d['dirs']} dirs, "
                  f"{d['bytes']} bytes ({d['status']})")]
    lines += [f"  error: {e['path']}: {e['error']}" for e in d["errors"]]
    lines += [f"  warning: {w}" for w in d.get("warnings") or []]
    return "\n".join(lines)


def _show(p: str | bytes) -> str:
    from fleetsafe.pathnames import display_path

    return display_path(p if isinstance(p, bytes) and p.startswith(b"/") else b"/" + os.fsencode(p).lstrip(b"/"))


def cmd_verify(ctx: Ctx) -> Outcome:
    from fleetsafe.verify import run_verify

    cfg = ctx.cfg
    args = ctx.args
    if args.read_data:
        fraction = 1.0
    elif args.read_data_subset is not None:
        fraction = args.read_data_subset / 100.0
    else:
        fraction = cfg.verify.read_data_percent / 100.0
    doc = _base(ctx, "verify")
    lock_warnings: list[str] = []
    backend, repo = _open_repo(ctx)
    try:
        with _shared_lock(ctx, repo, lock_warnings):
            result = run_verify(repo, fraction)
    finally:
        backend.close()
    doc["repository"] = repo.id
    doc.update(result)
    doc["warnings"] = lock_warnings
    damaged = result["status"] != "ok"
    code = EXIT_INTEGRITY if damaged else EXIT_OK
    audit = Audit("verify", "damaged" if damaged else "success", result["start"], result["end"], details={
        "result": result["status"], "read_data_percent": result["read_data_percent"], "repository": repo.id,
        "target": doc["target"], "packs_checked": result["packs_checked"], "blobs_checked": result["blobs_checked"],
        "problems": len(result["problems"])},
        errors=[{"path": p["object"], "error": p["problem"]} for p in result["problems"][:AUDIT_ERRORS_MAX]])
    return Outcome(doc, code, audit, text=lambda d: (
        f"repository {d['repository']}: {d['status']} ({d['packs_checked']} packs, {d['blobs_checked']} blobs, "
        f"{d['read_data_percent']}% read)" + "".join(f"\n  {p['object']}: {p['problem']}" for p in d["problems"])))


def cmd_repair(ctx: Ctx) -> Outcome:
    """Quarantine damaged packs so the next backup stores their blobs again (docs/cli.md)."""
    from fleetsafe.runtime import local_lock
    from fleetsafe.verify import run_repair

    dry_run = bool(getattr(ctx.args, "dry_run", False))
    doc = _base(ctx, "repair")
    with local_lock(ctx.cfg):
        backend, repo = _open_repo(ctx)
        try:
            with repo.lock(exclusive=not dry_run):
                result = run_repair(repo, dry_run=dry_run)
        finally:
            backend.close()
    doc["repository"] = repo.id
    doc.update(result)
    if result["unrepaired"]:
        code, status = EXIT_INTEGRITY, "damaged"
    elif result["damaged_packs"] or result["incomplete_snapshots"]:
        code, status = EXIT_PARTIAL, "partial"
    else:
        code, status = EXIT_OK, "success"
    audit = Audit("repair", status, result["start"], result["end"], details={
        "result": result["status"], "dry_run": dry_run, "repository": repo.id, "target": doc["target"],
        "quarantined": result["quarantined"][:AUDIT_ERRORS_MAX],
        "incomplete_snapshots": [s["id"] for s in result["incomplete_snapshots"]][:AUDIT_ERRORS_MAX]},
        errors=[{"path": p["object"], "error": "; ".join(p["problems"])}
                for p in result["damaged_packs"][:AUDIT_ERRORS_MAX]])
    return Outcome(doc, code, audit, text=_text_repair)


def _text_repair(d: dict[str, Any]) -> str:
    verb = "would quarantine" if d["dry_run"] else "quarantined"
    lines = [f"repository {d['repository']}: {d['status']} ({d['packs_checked']} packs, {d['blobs_checked']} blobs read)"]
    lines += [f"  {verb} {p['object']}: {'; '.join(p['problems'])}" for p in d["damaged_packs"]]
    lines += [f"  incomplete snapshot {s['id'][:12]}: {s['missing_blobs']} blob(s) missing" for s in d["incomplete_snapshots"]]
    if d.get("heal"):
        lines.append(f"  to heal: {d['heal']}")
    lines += [f"  not repaired: {p['object']}: {p['problem']}" for p in d["unrepaired"]]
    return "\n".join(lines)


def _audit_log(cfg: AgentConfig) -> AuditLog:
    return AuditLog(cfg.audit_log, cfg.host, head_file=cfg.state_dir / "audit.head")


def cmd_audit(ctx: Ctx) -> Outcome:
    cfg = ctx.cfg
    log_ = _audit_log(cfg)
    events = list(log_.events(since=ctx.args.since))
    doc: dict[str, Any] = {"action": "audit", "host": cfg.host, "path": str(cfg.audit_log), "events": events}
    code = EXIT_OK
    if ctx.args.verify_chain:
        rep = log_.verify_chain()
        doc.update(rep.to_dict())
        if not rep.ok:
            code = EXIT_INTEGRITY
    else:
        doc.update(first_seq=events[0]["seq"] if events else None, last_seq=events[-1]["seq"] if events else None,
                   head_hash=events[-1]["hash"] if events else None, chain_ok=None, chain_error=None)
    return Outcome(doc, code, None, text=lambda d: "\n".join(
        [f"{e['seq']:>6} {e['ts']} {e['action']:<10} {e['status']:<8} {e['actor'].get('user')}/{e['actor'].get('via')}"
         for e in d["events"]]
        + ([f"chain: {'ok' if d['chain_ok'] else 'BROKEN: ' + str(d['chain_error'])}"] if d.get("chain_ok") is not None else [])))


def cmd_status(ctx: Ctx) -> Outcome:
    from fleetsafe.runtime import is_locally_locked

    cfg = ctx.cfg
    doc = _base(ctx, "status")
    locked = is_locally_locked(cfg)
    backend, repo = _open_repo(ctx)
    try:
        snaps = repo.list_snapshots()
        slots = repo.slots()
        try:
            repo_locks = len(backend.list("locks/"))
        except FleetsafeError:
            repo_locks = None
        stats = repo.stats()
    finally:
        backend.close()
    last: dict[str, Any] = {}
    for s in snaps:
        if s.get("host") == cfg.host and not (s.get("type") == "full" and s.get("policy_scope", True) is False):
            last[str(s.get("type"))] = _snapshot_summary(s)  # a full of a --source subset is not the last full
    head = None
    try:
        events = list(_audit_log(cfg).events(since=0))
        head = {"last_seq": events[-1]["seq"], "last_ts": events[-1]["ts"]} if events else {"last_seq": 0}
    except FleetsafeError:
        head = None
    doc.update(repository=repo.id, location=backend.location, last_full=last.get("full"),
               last_incremental=last.get("incremental"), snapshots=len(snaps),
               key_slots=[{"type": s.get("type"), "fingerprint": s.get("fingerprint"), "created": s.get("created")} for s in slots],
               locked=locked or bool(repo_locks), local_lock_held=locked, repository_locks=repo_locks, stats=stats,
               audit=head)
    return Outcome(doc, EXIT_OK, None, text=lambda d: "\n".join([
        f"host {d['host']}, repository {d['repository']} on {d['location']} (target {d['target']})",
        (f"  snapshots: {d['snapshots']}; last full: {(d['last_full'] or {}).get('start', '-')}; "
         f"last incremental: {(d['last_incremental'] or {}).get('start', '-')}"),
        f"  key slots: {', '.join(s['type'] + ':' + s['fingerprint'] for s in d['key_slots'])}",
        f"  locked: {d['locked']}"]))


def cmd_selftest(ctx: Ctx) -> Outcome:
    from fleetsafe.selftest import run_selftest

    result = run_selftest()
    doc = {"action": "selftest", **result}
    code = EXIT_OK if result["status"] == "ok" else 1
    return Outcome(doc, code, None, text=lambda d: "\n".join(
        [f"{'ok  ' if c['ok'] else 'FAIL'} {c['name']} ({c['seconds']} s){'' if c['ok'] else ': ' + str(c.get('error'))}"
         for c in d["checks"]] + [f"selftest: {d['status']}"]))


def cmd_key_help(ctx: Ctx) -> Outcome:  # pragma: no cover - argparse requires a key subcommand
    raise UsageError("fleetsafe key: expected create or recovery-create")


def cmd_key_create(ctx: Ctx) -> Outcome:
    from fleetsafe import keys

    path = Path(ctx.args.file) if ctx.args.file else ctx.cfg.key_file
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = keys.create_host_key(path)
    fp = keys.host_fingerprint(key)
    del key
    doc = {"action": "key create", "file": str(path), "fingerprint": fp, "created": True}
    audit = Audit("key", "success", ctx.started, utc_now(), details={"operation": "create", "type": "host",
                                                                      "file": str(path), "fingerprint": fp})
    return Outcome(doc, EXIT_OK, audit, text=lambda d: f"host key {d['file']} created, fingerprint {d['fingerprint']}")


def cmd_key_recovery_create(ctx: Ctx) -> Outcome:
    from fleetsafe import keys
    from fleetsafe.runtime import read_passphrase

    passphrase = read_passphrase()
    fp = keys.create_recovery_keypair(ctx.args.private, ctx.args.public, passphrase)
    doc = {"action": "key recovery-create", "private": ctx.args.private, "public": ctx.args.public,
           "fingerprint": fp, "created": True}
    audit = Audit("key", "success", ctx.started, utc_now(), details={"operation": "recovery-create", "type": "recovery",
                                                                      "public": ctx.args.public, "fingerprint": fp})
    return Outcome(doc, EXIT_OK, audit, text=lambda d: f"recovery key pair created, fingerprint {d['fingerprint']}")
