"""One flipped byte in a pack on disk is found, named, and blocks restores (VER-CHECKSUM, ENC-TEST, REST-SAFE)."""

from __future__ import annotations

import os
from pathlib import Path

from cli_harness import Agent


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_pack(agent: Agent, tmp_path: Path) -> None:
    (agent.src / "data.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    (agent.src / "small").write_bytes(b"hello")
    sid = agent.run("backup", "--type", "full").doc["snapshot_id"]
    assert agent.run("verify", "--read-data").doc["status"] == "ok"

    pack = max(agent.packs(), key=lambda p: p.stat().st_size)  # the data pack
    name = pack.relative_to(agent.repo).as_posix()
    _flip(pack, pack.stat().st_size // 2)

    r = agent.run("verify", "--read-data", expect=5)
    assert r.doc["status"] == "damaged"
    assert name in {p["object"] for p in r.doc["problems"]}
    # Even the structural check (no decryption) names it: pack names are the SHA-256 of their bytes.
    r2 = agent.run("verify", expect=5)
    assert name in {p["object"] for p in r2.doc["problems"]}
    ev = agent.events()[-1]
    assert ev["action"] == "verify" and ev["status"] == "damaged" and ev["details"]["result"] == "damaged"

    # REST-SAFE: the restore checks what it will read first and refuses before writing anything.
    out = tmp_path / "out"
    r3 = agent.run("restore", sid, "--target-dir", str(out), expect=8)
    assert r3.doc["error"] == "restore_refused" and r3.doc["problems"]
    assert not out.exists() or not any(out.rglob("*"))
    assert agent.events()[-1]["status"] == "refused"
    # A subset that does not need the damaged pack still restores.
    agent.run("restore", sid, "--target-dir", str(out), "--include", str(agent.src / "small"))
    assert (out / str(agent.src).lstrip("/") / "small").read_bytes() == b"hello"


def test_deleted_pack_is_missing(agent: Agent) -> None:
    (agent.src / "f").write_bytes(os.urandom(100_000))
    agent.run("backup", "--type", "full")
    pack = max(agent.packs(), key=lambda p: p.stat().st_size)
    pack.unlink()
    r = agent.run("verify", expect=5)
    assert any(pack.name in p["object"] for p in r.doc["problems"])


def test_repair_quarantines_and_backup_heals(agent: Agent, tmp_path: Path) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    (agent.src / "data.bin").write_bytes(payload)
    (agent.src / "small").write_bytes(b"hello")
    sid = agent.run("backup", "--type", "full").doc["snapshot_id"]
    pack = max(agent.packs(), key=lambda p: p.stat().st_size)
    name = pack.relative_to(agent.repo).as_posix()
    _flip(pack, pack.stat().st_size // 2)
    agent.run("verify", "--read-data", expect=5)

    dry = agent.run("repair", "--dry-run", expect=3)
    assert dry.doc["dry_run"] and [p["object"] for p in dry.doc["damaged_packs"]] == [name]
    assert pack.exists()

    r = agent.run("repair", expect=3)
    assert r.doc["status"] == "repaired" and r.doc["quarantined"] == [name]
    assert not pack.exists()
    assert (agent.repo / "quarantine" / pack.name).exists()  # kept as evidence
    assert sid in {s["id"] for s in r.doc["incomplete_snapshots"]} and r.doc["heal"]
    ev = agent.events()[-1]
    assert ev["action"] == "repair" and ev["details"]["quarantined"] == [name]

    b = agent.run("backup", "--type", "full")
    assert b.doc["bytes_added"] >= len(payload)  # the lost blobs were stored again
    assert agent.run("verify", "--read-data").doc["status"] == "ok"
    assert agent.run("repair").doc["status"] == "ok"

    out = tmp_path / "out"
    agent.run("restore", sid, "--target-dir", str(out))
    assert (out / str(agent.src).lstrip("/") / "data.bin").read_bytes() == payload
    assert (out / str(agent.src).lstrip("/") / "small").read_bytes() == b"hello"


def test_full_backup_restores_blobs_of_a_missing_pack(agent: Agent) -> None:
    (agent.src / "f").write_bytes(os.urandom(100_000))
    agent.run("backup", "--type", "full")
    max(agent.packs(), key=lambda p: p.stat().st_size).unlink()
    b = agent.run("backup", "--type", "full")
    assert b.doc["bytes_added"] >= 100_000 and b.doc["warnings"]
