"""ruff and mypy stay clean on the agent and the controller-side plugins (STYLE 15).

Host-side modules and module_utils are left to ansible-lint/ansible-test: they keep
the Python-3.8-compatible idioms that run on managed hosts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_clean() -> None:
    out = _run(str(BIN / "ruff"), "check", "agent", "plugins/plugin_utils", "plugins/action", "tests", "bench")
    assert out.returncode == 0, out.stdout[-4000:]


def test_mypy_clean_on_the_agent() -> None:
    out = _run(str(BIN / "mypy"), "--ignore-missing-imports", "agent/fleetsafe")
    assert out.returncode == 0, out.stdout[-4000:]
