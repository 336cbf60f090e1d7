"""fleetsafe.selftest: passes on a good build and really fails when a primitive is broken."""

from __future__ import annotations

import pytest
from fleetsafe import crypto, selftest


def test_selftest_passes_with_source_vectors() -> None:
    res = selftest.run_selftest()
    assert res["status"] == "ok", res
    assert [c["name"] for c in res["checks"]][1].startswith("chunker vectors (tests/vectors)")


def test_embedded_vector_used_without_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selftest, "_vector_files", list)
    res = selftest.run_selftest()
    assert res["status"] == "ok" and res["checks"][1]["name"] == "chunker vector (embedded)"


def test_broken_crypto_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "hkdf", lambda ikm, info, *, salt=None, length=32: bytes(length))
    res = selftest.run_selftest()
    assert res["status"] == "failed"
    bad = [c for c in res["checks"] if not c["ok"]]
    assert "HKDF" in bad[0]["error"]


def test_broken_chunker_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleetsafe import chunker

    real = chunker.Chunker.chunks

    def shifted(self: chunker.Chunker, read):  # type: ignore[no-untyped-def]
        data = b"".join(real(self, read))
        for i in range(0, len(data), 5000):
            yield data[i : i + 5000]

    monkeypatch.setattr(chunker.Chunker, "chunks", shifted)
    monkeypatch.setattr(selftest, "_vector_files", list)
    res = selftest.run_selftest()
    assert not res["checks"][1]["ok"] and "boundaries" in res["checks"][1]["error"]
