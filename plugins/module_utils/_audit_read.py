# Private to this collection: no compatibility promise, do not import from other collections.
"""Read and check the agent's hash-chained audit log (AUD-LOG) without the agent.

Contract (docs/cli.md, "The audit event"): one JSON object per line;
``hash = sha256(canonical JSON of the event without "hash")`` with
canonical = ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` as UTF-8; ``prev`` is the previous event's ``hash``
(64 zeros before ``seq`` 1); ``seq`` grows by exactly one.

This file is used on both sides:

* on the managed host by the ``audit_collect`` module (``read_batch``), which
  must run on the target's Python (3.8+) with the standard library only;
* on the controller by ``plugin_utils/_store.py`` (``check_chain``), which
  re-checks every event itself: the controller never trusts the host's
  verdict, because a tampered host could simply claim ``chain_ok``.

It deliberately does not import the agent: plugins must work in an
execution environment where the agent is not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

GENESIS = "0" * 64

#: the event keys the chain check needs; anything else is opaque payload
REQUIRED_KEYS = ("seq", "prev", "hash")


def canonical(obj: dict[str, Any]) -> bytes:
    """The byte string that is hashed; must match the agent byte for byte."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_hash(event: dict[str, Any]) -> str:
    """Recompute an event's hash from its content (the ``hash`` key is excluded)."""
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


class ChainBreak:
    """Where and why a chain stops being trustworthy.

    ``seq`` is the sequence number at which the break was seen (the event
    that failed, or the one that was expected); ``expected``/``got`` are the
    two values that disagree, so the message an auditor reads is concrete.
    """

    def __init__(self, seq: int | None, reason: str, expected: Any = None, got: Any = None) -> None:
        self.seq = seq
        self.reason = reason
        self.expected = expected
        self.got = got

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "reason": self.reason, "expected": self.expected, "got": self.got}

    def message(self) -> str:
        text = "audit chain broken at seq {}: {}".format(self.seq if self.seq is not None else "?", self.reason)
        if self.expected is not None or self.got is not None:
            text += f" (expected {_short(self.expected)}, got {_short(self.got)})"
        return text

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ChainBreak({self.as_dict()!r})"


def _short(value: Any) -> str:
    text = str(value)
    # 64-hex hashes are unreadable in a one-line message; 16 characters still identify them.
    return text[:16] + "…" if len(text) == 64 else text


def check_event_shape(event: Any) -> str | None:
    """Why ``event`` cannot be part of a chain, or None when its shape is fine."""
    if not isinstance(event, dict):
        return "event is not a JSON object"
    for key in REQUIRED_KEYS:
        if key not in event:
            return f"event has no {key!r}"
    if not isinstance(event["seq"], int) or isinstance(event["seq"], bool) or event["seq"] < 1:
        return "seq is not a positive integer"
    if not isinstance(event["hash"], str) or not isinstance(event["prev"], str):
        return "hash/prev are not strings"
    return None


def check_chain(events: list[dict[str, Any]], anchor_seq: int | None, anchor_hash: str | None) -> dict[str, Any]:
    """Check that ``events`` continue the chain after (anchor_seq, anchor_hash).

    ``anchor_seq``/``anchor_hash`` is the last trusted event (the store's
    cursor).  ``anchor_seq=0`` with ``anchor_hash=GENESIS`` means "from the
    start of the log".  ``anchor_seq=None`` means "no anchor": the first event
    is accepted as it is (a log that starts mid-chain after rotation, or a
    re-anchored chain after an operator accepted a break), and only the rest
    must follow it.

    Returns ``{"good": n, "last_seq": s, "last_hash": h, "break": ChainBreak|None}``
    where the first ``n`` events are verified; nothing after a break counts.
    """
    good = 0
    last_seq = anchor_seq
    last_hash = anchor_hash
    for event in events:
        shape = check_event_shape(event)
        if shape:
            seq = event.get("seq") if isinstance(event, dict) else None
            return _result(good, last_seq, last_hash, ChainBreak(seq, shape))
        seq = event["seq"]
        if last_seq is not None:
            if seq != last_seq + 1:
                if seq <= last_seq:
                    reason = "sequence went backwards (log reset, reordered or replayed)"
                else:
                    reason = "events missing (removed lines or log rotated before collection)"
                return _result(good, last_seq, last_hash, ChainBreak(last_seq + 1, reason, last_seq + 1, seq))
            if event["prev"] != last_hash:
                return _result(good, last_seq, last_hash, ChainBreak(seq, "prev does not match the previous event's hash", last_hash, event["prev"]))
        actual = event_hash(event)
        if actual != event["hash"]:
            return _result(good, last_seq, last_hash, ChainBreak(seq, "event content does not match its hash (edited)", actual, event["hash"]))
        good += 1
        last_seq = seq
        last_hash = event["hash"]
    return _result(good, last_seq, last_hash, None)


def _result(good: int, last_seq: int | None, last_hash: str | None, brk: ChainBreak | None) -> dict[str, Any]:
    return {"good": good, "last_seq": last_seq, "last_hash": last_hash, "break": brk}


def read_batch(
    path: str,
    since: int,
    offset: int = 0,
    max_events: int = 500,
    max_bytes: int = 1048576,
    scan: bool = True,
) -> dict[str, Any]:
    """Return the events with ``seq > since`` from the log at ``path``, in a bounded batch.

    Never returns the whole log (ECOSYSTEM C7): at most ``max_events`` events
    and roughly ``max_bytes`` of JSON (always at least one event, so a huge
    event cannot stall collection).

    With ``scan`` (the first batch of a collection) the whole file is read
    once to check its chain on the host and to report ``log_first_seq``,
    ``log_last_seq`` and ``anchor_hash`` (the hash of the event at ``since``),
    which is how the controller notices a log that was reset, truncated or
    rewritten *behind* its cursor.  Later batches pass ``offset`` (returned as
    ``next_offset``) and ``scan=False`` so the file is not re-read from the
    start for every batch.

    A last line without a newline is being written by the agent right now
    and is left for the next collection, never parsed half-written.  A
    complete line that is not an event (a torn write the agent terminated)
    is skipped and reported in ``skipped_lines``.
    """
    result: dict[str, Any] = {
        "path": path,
        "log_present": False,
        "events": [],
        "more": False,
        "next_offset": offset,
        "log_first_seq": None,
        "log_last_seq": None,
        "log_last_hash": None,
        "anchor_hash": None,
        "log_chain_ok": None,
        "log_chain_error": None,
        "log_size": 0,
        "skipped_lines": [],
    }
    try:
        handle = open(path, "rb")  # noqa: SIM115 - a missing log is a normal state, not an error
    except FileNotFoundError:
        return result
    with handle:
        result["log_present"] = True
        size = os.fstat(handle.fileno()).st_size
        result["log_size"] = size
        if offset and (offset > size or scan):
            # A stale offset (file rotated/truncated since) or a scan request: start over.
            offset = 0
        handle.seek(offset)
        pos = offset
        events: list[dict[str, Any]] = []
        batch_bytes = 0
        collecting = True
        prev_seq: int | None = None
        prev_hash: str | None = None
        chain_error: ChainBreak | None = None
        line_no = 0
        for raw in handle:
            line_no += 1
            if not raw.endswith(b"\n"):
                break  # torn or in-flight tail: not an event yet
            line_end = pos + len(raw)
            text = raw.strip()
            if not text:
                pos = line_end
                continue
            try:
                event = json.loads(text.decode("utf-8"))
            except ValueError:
                event = None
            shape = check_event_shape(event) if event is not None else "not valid JSON"
            if shape:
                # A crash mid-write leaves a torn line, which the agent terminates and
                # then chains on from the last good event.  Skipping the line is safe:
                # the chain check still proves that no *event* is missing or changed
                # (replacing a real event by garbage leaves a gap in seq/prev).
                if len(result["skipped_lines"]) < 20:
                    result["skipped_lines"].append({"line": line_no, "reason": shape, "after_seq": prev_seq})
                pos = line_end
                continue
            assert event is not None
            seq = event["seq"]
            if scan:
                if result["log_first_seq"] is None:
                    result["log_first_seq"] = seq
                result["log_last_seq"] = seq
                result["log_last_hash"] = event["hash"]
                if seq == since:
                    result["anchor_hash"] = event["hash"]
                if chain_error is None:
                    chain_error = _scan_step(event, prev_seq, prev_hash)
            prev_seq, prev_hash = seq, event["hash"]
            if collecting and seq > since:
                encoded = len(raw)
                if events and (len(events) >= max_events or batch_bytes + encoded > max_bytes):
                    result["more"] = True
                    collecting = False
                    if not scan:
                        break
                else:
                    events.append(event)
                    batch_bytes += encoded
                    result["next_offset"] = line_end
            pos = line_end
        result["events"] = events
        if scan:
            result["log_chain_ok"] = chain_error is None
            result["log_chain_error"] = chain_error.as_dict() if chain_error else None
        elif not result["more"] and events:
            result["log_last_seq"] = events[-1]["seq"]
    return result


def _scan_step(event: dict[str, Any], prev_seq: int | None, prev_hash: str | None) -> ChainBreak | None:
    """One step of the host-side whole-file check.  A file that starts after
    seq 1 was rotated by the agent: its first ``prev`` cannot be checked here."""
    seq = event["seq"]
    if prev_seq is None:
        if seq == 1 and event["prev"] != GENESIS:
            return ChainBreak(1, "first event does not start from the genesis hash", GENESIS, event["prev"])
    else:
        if seq != prev_seq + 1:
            return ChainBreak(prev_seq + 1, "sequence gap or disorder in the host log", prev_seq + 1, seq)
        if event["prev"] != prev_hash:
            return ChainBreak(seq, "prev does not match the previous line's hash", prev_hash, event["prev"])
    actual = event_hash(event)
    if actual != event["hash"]:
        return ChainBreak(seq, "event content does not match its hash (edited)", actual, event["hash"])
    return None


def config_value(config_path: str, key: str, default: str) -> str:
    """A top-level scalar of the agent's config (``audit_log``, ``state_dir``), else ``default``.

    Only top-level scalars are needed, so this reads them with a line match
    instead of requiring PyYAML on every managed host.  An unreadable config
    (0600 root, collected without become) gives the default, like a missing one.
    """
    try:
        with open(config_path, "r", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    value = line.split(":", 1)[1].split(" #", 1)[0].strip().strip("'\"")
                    if value:
                        return value
    except (OSError, UnicodeDecodeError):
        pass
    return default


def audit_log_from_config(config_path: str, default: str = "/var/log/fleetsafe/audit.jsonl") -> str:
    return config_value(config_path, "audit_log", default)


def read_head(config_path: str, log_path: str) -> dict[str, Any] | None:
    """The agent's head file: the last ``seq``/``hash`` it appended (docs/cli.md).

    It survives log rotation and reveals a cut-off tail.  The agent writes it
    after the log line is fsynced, so reading it *before* the log means the
    log always reaches at least this ``seq`` unless something removed lines.
    """
    state_dir = config_value(config_path, "state_dir", "/var/lib/fleetsafe")
    for candidate in (os.path.join(state_dir, "audit.head"), log_path + ".head"):
        try:
            with open(candidate, "r", encoding="utf-8") as handle:
                data = json.load(handle)
            return {"seq": int(data["seq"]), "hash": str(data["hash"]), "path": candidate}
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return {"seq": None, "hash": None, "path": candidate, "error": str(exc)}
    return None


#: user-facing options of fleetsafe.backup.audit_collect (shared by the module
#: and the action plugin so the two argument specs cannot drift apart)
AUDIT_COLLECT_USER_SPEC: dict[str, Any] = {
    "store": {"type": "path", "required": True},
    "path": {"type": "path"},
    "config": {"type": "path", "default": "/etc/fleetsafe/agent.yml"},
    "max_events": {"type": "int", "default": 500},
    "max_bytes": {"type": "int", "default": 1048576},
    "max_batches": {"type": "int", "default": 1000},
    "on_chain_break": {"type": "str", "default": "warn", "choices": ["warn", "fail"]},
    "accept_chain_break": {"type": "bool", "default": False},
    "accept_reason": {"type": "str"},
    "relative_to": {"type": "str", "default": "inventory", "choices": ["inventory", "playbook", "cwd"]},
}

#: set by the action plugin for each batch; a value given in a task is replaced
AUDIT_COLLECT_INTERNAL_SPEC: dict[str, Any] = {
    "since": {"type": "int", "default": 0},
    "offset": {"type": "int", "default": 0},
    "scan": {"type": "bool", "default": True},
}
