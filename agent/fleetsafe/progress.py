"""Progress lines on stderr, only when stderr is a terminal.

Contract: a ``Progress`` never writes to stdout (stdout carries only the
result document) and writes nothing at all when its stream is not a TTY --
under a systemd timer, Ansible or a pipe the journal must not fill with
carriage-return noise.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable


class Progress:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = bool(enabled)
        self._dirty = False
        self._t0 = time.monotonic()

    def _write(self, line: str) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + line[:width] + "\x1b[K")
        self.stream.flush()
        self._dirty = True

    def backup(self, counts: dict[str, Any]) -> None:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        path = str(counts.get("path", ""))
        self._write(
            f"{counts.get('files', 0)} files, {counts.get('dirs', 0)} dirs, "
            f"{human_bytes(counts.get('bytes_read', 0))} read ({human_bytes(counts.get('bytes_read', 0) / elapsed)}/s), "
            f"{human_bytes(counts.get('bytes_added', 0))} new  {path[-60:]}"
        )

    def restore(self, done: int, total: int) -> None:
        pct = 100.0 * done / total if total else 100.0
        self._write(f"restored {human_bytes(done)} of {human_bytes(total)} ({pct:.0f}%)")

    def message(self, text: str) -> None:
        self._write(text)

    def done(self) -> None:
        if self.enabled and self._dirty:
            self.stream.write("\n")
            self.stream.flush()
            self._dirty = False
