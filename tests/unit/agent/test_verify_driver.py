"""fleetsafe.verify: the driver's document, whatever repo.check reports (VER-CHECKSUM, ENC-TEST)."""

from __future__ import annotations

from typing import Any

import pytest
from fleetsafe.verify import run_verify


class FakeRepo:
    def __init__(self, result: dict[str, Any], load_problems: list[dict[str, str]] | None = None,
                 callback: list[dict[str, str]] | None = None) -> None:
        self.result = result
        self.load_problems = load_problems or []
        self.callback = callback or []
        self.calls: list[float] = []

    def check(self, read_data: float = 0.0, on_problem: Any = None) -> dict[str, Any]:
        self.calls.append(read_data)
        for p in self.callback:
            on_problem(p)
        return self.result


def test_ok_document() -> None:
    repo = FakeRepo({"status": "ok", "packs_checked": 3, "blobs_checked": 9, "bytes_read": 100, "problems": [],
                     "notes": [{"object": "packs/aa/bb", "note": "in no index"}]})
    doc = run_verify(repo, 0.05)
    assert repo.calls == [0.05]
    assert doc["status"] == "ok" and doc["read_data_percent"] == 5.0
    assert (doc["packs_checked"], doc["blobs_checked"], doc["bytes_read"]) == (3, 9, 100)
    assert doc["notes"] == [{"object": "packs/aa/bb", "note": "in no index"}]  # notes are not damage


def test_problems_from_every_channel_once() -> None:
    p1 = {"object": "packs/12/34", "problem": "SHA-256 mismatch"}
    p2 = {"object": "index/ab", "problem": "does not decrypt"}
    repo = FakeRepo({"problems": [p1]}, load_problems=[p2], callback=[p1])
    doc = run_verify(repo, 1.0)
    assert doc["status"] == "damaged"
    assert doc["problems"] == [p2, p1]


def test_fraction_checked() -> None:
    with pytest.raises(ValueError, match="fraction"):
        run_verify(FakeRepo({}), 5.0)
