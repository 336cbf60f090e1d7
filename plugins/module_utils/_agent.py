# Private to this collection: used by fleetsafe.backup modules only, not a public API.
# -*- coding: utf-8 -*-
# Copyright (c) fleetsafe contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Call the fleetsafe agent's JSON command line and turn its documents into results.

Contract (docs/cli.md): every ``fleetsafe <cmd> --json`` prints exactly one
JSON document on stdout, logs go to stderr, and the exit code says what
happened (0 ok, 3 partial, 4 locked, 5 integrity, ...).  On an error the
document is ``{"schema_version": 1, "error": kind, "message": ..., "exit_code": N}``.

Each public function here does one agent action and either returns a plain
dict that a module passes to ``exit_json`` or raises one ``AgentError``
subclass whose ``msg`` and ``result`` a module passes to ``fail_json``.
Nothing in this file imports Ansible: a runner is any callable
``runner(argv, env) -> (rc, stdout, stderr)``, so unit tests drive it with a
subprocess runner against a real agent in a temporary configuration.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os

SCHEMA_VERSION = 1

# Exit codes of the agent (docs/cli.md "Exit codes").  Never renumbered.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 4
EXIT_INTEGRITY = 5
EXIT_KEY = 6
EXIT_TARGET = 7
EXIT_REFUSED = 8
EXIT_NOT_FOUND = 9

DEFAULT_AGENT_PATH = "/usr/local/bin/fleetsafe"
DEFAULT_CONFIG = "/etc/fleetsafe/agent.yml"

# Results from many hosts are aggregated by Ansible (ECOSYSTEM C7): a backup
# with ten thousand unreadable files must not return ten thousand entries.
MAX_LISTED_PROBLEMS = 50

#: the audit log's actor.via for runs started from Ansible (docs/cli.md)
TRIGGER = "ansible"


class AgentError(Exception):
    """A failed agent call.  ``result`` holds extra keys for ``fail_json``."""

    def __init__(self, msg, rc=None, kind=None, result=None):
        super(AgentError, self).__init__(msg)
        self.msg = msg
        self.rc = rc
        self.kind = kind
        self.result = dict(result or {})
        if rc is not None:
            self.result.setdefault("rc", rc)
        if kind is not None:
            self.result.setdefault("error", kind)


class AgentLocked(AgentError):
    """Another run holds the repository lock (exit 4)."""


class AgentDamaged(AgentError):
    """verify found damaged, missing or unauthenticated data (exit 5)."""


def common_argument_spec():
    """Options every fleetsafe module takes (doc fragment ``fleetsafe.backup.agent``)."""
    return dict(
        agent_path=dict(type="path", default=DEFAULT_AGENT_PATH),
        config=dict(type="path", default=DEFAULT_CONFIG),
        target=dict(type="str"),
    )


def module_runner(module):
    """A runner that goes through ``AnsibleModule.run_command`` (no shell)."""

    def run(argv, env):
        return module.run_command(argv, environ_update=env, check_rc=False)

    return run


class Agent:
    """One agent on one host: which executable, which config, which target."""

    def __init__(self, runner, agent_path=DEFAULT_AGENT_PATH, config=DEFAULT_CONFIG, target=None):
        self.runner = runner
        # A list lets tests run ``python -m fleetsafe``; modules pass a path.
        self.executable = list(agent_path) if isinstance(agent_path, (list, tuple)) else [agent_path]
        self.config = config
        self.target = target

    @classmethod
    def from_module(cls, module):
        params = module.params
        return cls(module_runner(module), agent_path=params["agent_path"],
                   config=params["config"], target=params.get("target"))

    def argv(self, *args):
        argv = self.executable + ["--json", "--config", self.config]
        if self.target:
            argv += ["--target", self.target]
        return argv + list(args)

    def call(self, *args):
        """Run one subcommand; returns (rc, document).

        Raises AgentError when the agent cannot be started or printed no
        JSON document; error documents are returned for the caller to map,
        because only the caller knows which exit codes are acceptable.
        """
        if len(self.executable) == 1 and os.path.isabs(self.executable[0]) \
                and not os.access(self.executable[0], os.X_OK):
            raise AgentError("the fleetsafe agent is not installed at %s (run the "
                             "fleetsafe.backup.agent role first)" % self.executable[0],
                             kind="not_installed")
        try:
            rc, out, err = self.runner(self.argv(*args), {"FLEETSAFE_TRIGGER": TRIGGER})
        except OSError as exc:
            raise AgentError("cannot run the fleetsafe agent %s: %s" % (self.executable[0], exc),
                             kind="not_installed")
        return rc, parse_document(rc, out, err)


def parse_document(rc, out, err):
    """The one JSON document the agent printed, or AgentError naming what came instead."""
    text = (out or "").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        raise AgentError("the fleetsafe agent printed no JSON document (exit %s): %s"
                         % (rc, _tail(err or out)), rc=rc, kind="protocol",
                         result=dict(stderr=_tail(err)))
    if not isinstance(doc, dict):
        raise AgentError("the fleetsafe agent printed a %s instead of a JSON object"
                         % type(doc).__name__, rc=rc, kind="protocol")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise AgentError("the fleetsafe agent speaks schema_version %r; this collection "
                         "expects %d" % (version, SCHEMA_VERSION), rc=rc, kind="protocol")
    return doc


def _tail(text, limit=2000):
    text = (text or "").strip()
    return text[-limit:] if len(text) > limit else text


def _raise_for_error(rc, doc, action):
    """Turn an error document (``{"error": ..., "message": ...}``) into an exception."""
    kind = doc.get("error") or "failure"
    message = doc.get("message") or "%s failed with exit code %s" % (action, rc)
    cls = AgentLocked if rc == EXIT_LOCKED else AgentDamaged if rc == EXIT_INTEGRITY else AgentError
    extra = dict((k, v) for k, v in doc.items() if k not in ("error", "message", "schema_version"))
    raise cls("fleetsafe %s: %s" % (action, message), rc=rc, kind=kind, result=_trim(extra))


def _trim(doc):
    """Cap the per-path lists so that a fleet's results stay small (C7)."""
    out = dict(doc)
    for key in ("errors", "problems"):
        items = out.get(key)
        if isinstance(items, list) and len(items) > MAX_LISTED_PROBLEMS:
            out[key] = items[:MAX_LISTED_PROBLEMS]
            out[key + "_total"] = len(items)
    return out


def _describe(item):
    if isinstance(item, dict):
        where = item.get("path") or item.get("object") or item.get("target") or "?"
        what = item.get("error") or item.get("problem") or item.get("message") or "error"
        return "%s: %s" % (where, what)
    return str(item)


def run_init(agent):
    """``fleetsafe init``: changed when the repository was created or a key slot added.

    An existing repository gets a slot for a new recovery public key
    (``slots_added``); that is a change, and a warning says so, because the
    older recovery slots still open the repository until they are rotated out.
    """
    rc, doc = agent.call("init")
    if rc != EXIT_OK or "error" in doc:
        _raise_for_error(rc, doc, "init")
    result = dict(doc)
    result.pop("schema_version", None)
    added = [str(fp) for fp in (doc.get("slots_added") or [])]
    warnings = [str(w) for w in (result.pop("warnings", None) or [])]
    if added and not doc.get("created"):
        warnings.append("fleetsafe init: recovery key slot(s) added to the existing repository: %s; "
                        "the older recovery slot(s) still open the repository - removing them is a "
                        "separate rotation step" % ", ".join(added))
    result["changed"] = bool(doc.get("created")) or bool(added)
    result["warnings"] = warnings
    return result


def run_backup(agent, backup_type, sources=None, check_mode=False, fail_on_locked=True):
    """``fleetsafe backup`` (FREQ-FULL / FREQ-INCR).

    Returns the agent's M5 document plus ``changed`` and ``warnings`` (list of
    strings).  Partial runs (exit 3) are not failures: the snapshot exists and
    every skipped path or target is named in the warnings.  A held lock
    (exit 4) raises AgentLocked unless ``fail_on_locked`` is false.
    """
    if backup_type not in ("full", "incremental"):
        raise AgentError("type must be full or incremental, got %r" % (backup_type,), kind="usage")
    if check_mode:
        # Check mode predicts: a backup run always makes a new snapshot.
        return dict(changed=True, status="check_mode", type=backup_type, snapshot_id=None,
                    data_sets=list(sources or []), warnings=[])
    args = ["backup", "--type", backup_type]
    for source in sources or []:
        args += ["--source", source]
    rc, doc = agent.call(*args)
    if rc == EXIT_LOCKED and not fail_on_locked:
        return dict(changed=False, status="locked", type=backup_type, snapshot_id=None, rc=rc,
                    warnings=["fleetsafe backup: %s; no snapshot was taken"
                              % (doc.get("message") or "another run holds the repository lock")])
    if rc not in (EXIT_OK, EXIT_PARTIAL) or "error" in doc:
        _raise_for_error(rc, doc, "backup")
    result = _trim(doc)
    result.pop("schema_version", None)
    agent_warnings = result.pop("warnings", None) or []
    warnings = [str(w) if not isinstance(w, dict) else _describe(w) for w in agent_warnings]
    if rc == EXIT_PARTIAL or doc.get("status") == "partial":
        errors = doc.get("errors") or []
        shown = "; ".join(_describe(e) for e in errors[:10])
        more = " (and %d more)" % (len(errors) - 10) if len(errors) > 10 else ""
        warnings.insert(0, "partial backup: %d path(s) or target(s) skipped: %s%s"
                        % (len(errors), shown, more))
        result["status"] = "partial"
    result["changed"] = bool(doc.get("snapshot_id"))
    result["rc"] = rc
    result["warnings"] = warnings
    return result


def list_snapshots(agent, last=0, now=None):
    """``fleetsafe snapshots``: read-only.  Returns snapshots (oldest first),
    the newest full and incremental snapshot that covered the configured
    sources (``policy_scope`` not false), and the count."""
    rc, doc = agent.call("snapshots")
    if rc != EXIT_OK or "error" in doc:
        _raise_for_error(rc, doc, "snapshots")
    snapshots = doc.get("snapshots")
    if not isinstance(snapshots, list):
        raise AgentError("fleetsafe snapshots: expected a list under 'snapshots', got %s"
                         % type(snapshots).__name__, rc=rc, kind="protocol")
    last_of = {}
    for snap in snapshots:
        # FREQ-FULL / FREQ-INCR: a backup of a subset of the sources
        # (``policy_scope`` false, e.g. ``--source``) is listed but is not the
        # last full or incremental; a missing key (older agents) counts as true.
        if isinstance(snap, dict) and snap.get("policy_scope", True) is not False:
            last_of[snap.get("type")] = snap
    shown = snapshots[-last:] if last and last > 0 else snapshots
    now = _utcnow() if now is None else now
    return dict(changed=False, snapshots=shown, count=len(snapshots),
                last_full=last_of.get("full"), last_incremental=last_of.get("incremental"),
                last_full_age_seconds=_age(last_of.get("full"), now),
                last_incremental_age_seconds=_age(last_of.get("incremental"), now))


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def parse_time(text):
    """An ISO-8601 UTC time of the agent (``2026-12-03T17:00:00Z``, optional fraction)."""
    value = str(text).strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    if "." in value:
        # fromisoformat before Python 3.11 takes only 3 or 6 fraction digits.
        head, _dot, rest = value.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        value = "%s.%s%s" % (head, (digits + "000000")[:6], tz)
    stamp = datetime.datetime.fromisoformat(value)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp


def _age(snapshot, now):
    """Seconds since the snapshot started, or None (no snapshot / no usable time)."""
    if not snapshot or not snapshot.get("start"):
        return None
    try:
        return max(0.0, round((now - parse_time(snapshot["start"])).total_seconds(), 3))
    except ValueError:
        return None


def run_verify(agent, read_data_percent=0.0):
    """``fleetsafe verify`` (VER-CHECKSUM, ENC-TEST).  Never changes anything.

    Raises AgentDamaged (with the problems listed) when the repository is
    damaged, so a play fails on the host that needs attention.
    """
    pct = float(read_data_percent or 0)
    if not 0 <= pct <= 100:
        raise AgentError("read_data_percent must be between 0 and 100, got %s" % pct, kind="usage")
    args = ["verify"]
    if pct >= 100:
        args.append("--read-data")
    elif pct > 0:
        args += ["--read-data-subset", _format_percent(pct)]
    rc, doc = agent.call(*args)
    if rc == EXIT_INTEGRITY or doc.get("status") == "damaged":
        problems = doc.get("problems") or []
        shown = "; ".join(_describe(p) for p in problems[:10])
        more = " (and %d more)" % (len(problems) - 10) if len(problems) > 10 else ""
        result = _trim(doc)
        result.pop("schema_version", None)
        raise AgentDamaged("fleetsafe verify: repository damaged, %d problem(s): %s%s"
                           % (len(problems), shown or doc.get("message", "see problems"), more),
                           rc=rc, kind="integrity", result=result)
    if rc != EXIT_OK or "error" in doc:
        _raise_for_error(rc, doc, "verify")
    result = _trim(doc)
    result.pop("schema_version", None)
    result["changed"] = False
    result["read_data_percent"] = pct
    return result


def _format_percent(pct):
    text = ("%.3f" % pct).rstrip("0").rstrip(".")
    return text or "0"
