"""Tree streams: a snapshot's file list as JSON lines (format v1).

Each entry (docs/architecture.md, "Tree entries") becomes one line::

    {"content":[...],"gid":0,"mode":33188,...,"n":"etc/hosts","type":"file"}\\n

* ``path`` (bytes) is stored as ``"n"`` (str) when it is valid UTF-8, else as
  ``"nb"`` (standard base64 of the raw bytes), so non-UTF-8 names round-trip
  byte for byte.  ``target`` (bytes) likewise as ``"t"`` / ``"tb"``.
* Every other key is stored under its own name; values must be JSON
  (``content`` is a list of hex blob ids).
* Keys sorted, compact separators, ASCII only (``ensure_ascii``), newline
  terminated: the same entries always give the same bytes, so the repository
  chunker cuts unchanged stretches of the stream identically and they
  deduplicate across snapshots.

The repository chunks the stream with its keyed chunker and stores the
chunks as ``tree`` blobs; the snapshot manifest lists their ids in order.
A line may span blobs.

Paths are validated both ways: relative, ``/``-separated, no empty, ``.`` or
``..`` component, no NUL (REST-SAFE starts here; restore checks again).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from typing import Any

from fleetsafe.errors import FormatError

ENTRY_TYPES = frozenset({"file", "dir", "symlink", "hardlink", "fifo", "other"})
_BYTES_FIELDS = (("path", "n", "nb"), ("target", "t", "tb"))
_RESERVED = frozenset({"n", "nb", "t", "tb"})


def check_path(path: bytes, what: str = "tree entry path") -> bytes:
    """``path`` if it is a safe relative path, else ``FormatError``."""
    if not isinstance(path, bytes):
        raise FormatError(what=what, expected="bytes", got=type(path).__name__)
    if not path or path.startswith(b"/") or b"\0" in path:
        raise FormatError(what=what, expected="a relative path without NUL", got=repr(path))
    for part in path.split(b"/"):
        if part in (b"", b".", b".."):
            raise FormatError(what=what, expected="no empty, '.' or '..' component", got=repr(path))
    return path


def _put_bytes(out: dict[str, Any], value: bytes, text_key: str, raw_key: str) -> None:
    try:
        out[text_key] = value.decode("utf-8")
    except UnicodeDecodeError:
        out[raw_key] = base64.b64encode(value).decode("ascii")


def encode_entry(entry: dict[str, Any]) -> bytes:
    """One tree entry as one JSON line (bytes, newline terminated)."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key in _RESERVED:
            raise FormatError(what="tree entry key", expected="not one of n/nb/t/tb", got=key)
        if key == "path":
            _put_bytes(out, check_path(value), "n", "nb")
        elif key == "target":
            if value is None:
                continue
            if not isinstance(value, bytes):
                raise FormatError(what="tree entry target", expected="bytes", got=type(value).__name__)
            _put_bytes(out, value, "t", "tb")
        else:
            out[key] = value
    if "n" not in out and "nb" not in out:
        raise FormatError(what="tree entry", expected="a path", got=sorted(entry))
    if out.get("type") not in ENTRY_TYPES:
        raise FormatError(what="tree entry type", expected=sorted(ENTRY_TYPES), got=out.get("type"))
    try:
        line = json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FormatError(what="tree entry", expected="JSON-serialisable values", got=str(exc)) from exc
    return line.encode("ascii") + b"\n"


def _get_bytes(obj: dict[str, Any], text_key: str, raw_key: str, what: str) -> bytes | None:
    if text_key in obj:
        v = obj.pop(text_key)
        if not isinstance(v, str):
            raise FormatError(what=what, expected="a string", got=type(v).__name__)
        try:
            return v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FormatError(what=what, expected="valid UTF-8", got=repr(v)) from exc
    if raw_key in obj:
        v = obj.pop(raw_key)
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise FormatError(what=what, expected="base64", got=repr(v)[:40]) from exc
    return None


def decode_entry(line: bytes) -> dict[str, Any]:
    """Inverse of ``encode_entry``; strict."""
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(what="tree line", expected="JSON", got=str(exc)) from exc
    if not isinstance(obj, dict):
        raise FormatError(what="tree line", expected="a JSON object", got=type(obj).__name__)
    path = _get_bytes(obj, "n", "nb", "tree entry path")
    if path is None:
        raise FormatError(what="tree entry", expected="n or nb", got=sorted(obj))
    target = _get_bytes(obj, "t", "tb", "tree entry target")
    if obj.get("type") not in ENTRY_TYPES:
        raise FormatError(what="tree entry type", expected=sorted(ENTRY_TYPES), got=obj.get("type"))
    obj["path"] = check_path(path)
    if target is not None:
        obj["target"] = target
    return obj


def encode_stream(entries: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for e in entries:
        yield encode_entry(e)


def decode_stream(blobs: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Entries from the concatenation of tree blobs (lines may span blobs)."""
    rest = b""
    for blob in blobs:
        data = rest + blob
        lines = data.split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield decode_entry(line)
    if rest:
        raise FormatError(what="tree stream", expected="a final newline", got=f"{len(rest)} trailing bytes")


class IterReader:
    """A ``read(n)`` over an iterator of byte strings (feeds the chunker without building the stream)."""

    def __init__(self, parts: Iterable[bytes]) -> None:
        self._it = iter(parts)
        self._buf = bytearray()
        self._done = False

    def read(self, n: int) -> bytes:
        while len(self._buf) < n and not self._done:
            try:
                self._buf += next(self._it)
            except StopIteration:
                self._done = True
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out
