"""Run the real fleetsafe agent CLI in a temporary configuration, and fake agents
for the exit codes a healthy test repository cannot produce on demand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
AGENT_DIR = ROOT / "agent"


def subprocess_runner(argv, env):
    full = dict(os.environ)
    full["PYTHONPATH"] = str(AGENT_DIR) + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env)
    proc = subprocess.run(argv, env=full, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def agent_cli_available() -> bool:
    rc, _out, _err = subprocess_runner([sys.executable, "-m", "fleetsafe", "--help"], {})
    return rc == 0


REAL_AGENT = [sys.executable, "-m", "fleetsafe"]


def write_fake_agent(path: Path, rc: int, doc: object | str, record: Path | None = None) -> Path:
    """An executable that prints ``doc`` (JSON unless a str) and exits ``rc``.
    With ``record`` it appends its argv and FLEETSAFE_TRIGGER as one JSON line."""
    body = doc if isinstance(doc, str) else json.dumps(doc)
    path.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        if {str(record)!r} != "None":
            with open({str(record)!r}, "a") as fh:
                fh.write(json.dumps({{"argv": sys.argv[1:], "trigger": os.environ.get("FLEETSAFE_TRIGGER")}}) + "\\n")
        sys.stderr.write("some log line\\n")
        sys.stdout.write({body!r})
        sys.exit({rc})
        """))
    path.chmod(0o755)
    return path
