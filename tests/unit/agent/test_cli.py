"""fleetsafe.cli in-process: parsing, JSON documents, exit codes (the subprocess tests are in tests/integration/agent)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fleetsafe import cli
from fleetsafe.progress import Progress, human_bytes


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    rc = cli.main(list(argv))
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return rc, json.loads(out)


def test_global_options_before_and_after_subcommand() -> None:
    p = cli.build_parser()
    a = p.parse_args(["--config", "/a.yml", "--json", "backup", "--type", "full", "--target", "offsite"])
    assert (a.config, a.json, a.backup_type, a.target) == ("/a.yml", True, "full", "offsite")
    b = p.parse_args(["backup", "--config", "/b.yml", "--json"])
    assert (b.config, b.json, b.backup_type, b.target) == ("/b.yml", True, "incremental", None)
    c = p.parse_args(["key", "create", "--file", "/k", "--json"])
    assert c.func is cli.cmd_key_create and c.json


def test_usage_error_is_a_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = _run(capsys, "--json", "verify", "--read-data", "--read-data-subset", "5")
    assert rc == 2 and doc == {"schema_version": 1, "error": "usage", "message": doc["message"], "exit_code": 2}
    assert "not allowed with" in doc["message"]
    rc, doc = _run(capsys, "--json", "verify", "--read-data-subset", "0")
    assert rc == 2


def test_config_error_document(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, doc = _run(capsys, "--json", "--config", str(tmp_path / "none.yml"), "status")
    assert rc == 2 and doc["error"] == "config"


def test_human_error_goes_to_stderr(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = cli.main(["--config", str(tmp_path / "none.yml"), "status"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == "" and "file not found" in cap.err


def test_selftest_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = _run(capsys, "selftest", "--json")
    assert rc == 0 and doc["status"] == "ok" and doc["action"] == "selftest"


def test_progress_only_on_a_tty() -> None:
    buf = io.StringIO()
    p = Progress(buf)
    p.backup({"files": 1, "bytes_read": 10, "path": "/x"})
    p.done()
    assert buf.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    p = Progress(tty)
    p.backup({"files": 1, "bytes_read": 2048, "path": "/etc/hosts"})
    p.done()
    assert "\r" in tty.getvalue() and "/etc/hosts" in tty.getvalue() and tty.getvalue().endswith("\n")
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(12) == "12 B"


def test_journal_priority_prefix(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    cli._setup_logging(0)
    cli.log.warning("disk almost full")
    assert capsys.readouterr().err.startswith("<4>fleetsafe: WARNING: disk almost full")


def test_internal_error_still_one_json_document(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx: cli.Ctx) -> cli.Outcome:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli, "cmd_selftest", boom)
    rc = cli.main(["--json", "selftest"])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert rc == 1 and doc["error"] == "internal" and "ZeroDivisionError" in doc["message"]
    assert "Traceback" in cap.err
