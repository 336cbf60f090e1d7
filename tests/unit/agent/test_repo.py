"""Repository format v1 through the public ``Repository`` API (ENC-REST, VER-CHECKSUM, ENC-TEST)."""

from __future__ import annotations

import io
import json
import os
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fleetsafe import crypto, keys
from fleetsafe.chunker import ChunkerParams
from fleetsafe.errors import (
    AmbiguousSnapshotId,
    AuthenticationFailed,
    BlobNotFound,
    FormatError,
    IntegrityError,
    LockedError,
    NoMatchingKeySlot,
    RepositoryExists,
    RepositoryNotFound,
    SnapshotNotFound,
    UsageError,
)
from fleetsafe.repo import Repository
from fleetsafe.storage.local import LocalBackend

SMALL = ChunkerParams(1024, 4096, 16384)


@pytest.fixture
def backend(tmp_path):
    return LocalBackend(tmp_path / "repo")


@pytest.fixture
def host_key():
    return os.urandom(32)


@pytest.fixture
def recovery():
    return X25519PrivateKey.generate()


@pytest.fixture
def repo(backend, host_key, recovery):
    return Repository.init(backend, host_key=host_key, recovery_public=crypto.x25519_public_bytes(recovery),
                           host="web1", params=SMALL, pack_size=64 * 1024)


def rnd(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def backup(repo: Repository, files: dict[bytes, bytes], **extra) -> str:
    entries = []
    for path, data in sorted(files.items()):
        ids = [repo.add_blob("data", c)[0].hex() for c in repo.chunk(io.BytesIO(data))]
        entries.append({"path": path, "type": "file", "mode": 0o644, "size": len(data), "content": ids})
    tree = repo.write_tree(entries)
    manifest = {"host": "web1", "type": "full", "paths": ["/"], "start": "2026-12-03T17:00:00Z",
                "end": "2026-12-03T17:00:01Z", "status": "complete", "errors": [], "stats": {}, "tree": tree,
                "tags": [], "parent": None}
    manifest.update(extra)
    return repo.save_snapshot(manifest)


def restore(repo: Repository, snapshot: str) -> dict[bytes, bytes]:
    m = repo.load_snapshot(snapshot)
    return {e["path"]: b"".join(repo.load_blob(c) for c in e["content"]) for e in repo.read_tree(m["tree"])}


# --- init / open / keys ---------------------------------------------------------------
def test_init_then_open_with_host_key(backend, host_key, repo):
    again = Repository.open(backend, host_key=host_key)
    assert again.id == repo.id and len(repo.id) == 32
    assert again.config.chunker == SMALL


def test_init_twice_refused(backend, host_key, repo):
    with pytest.raises(RepositoryExists):
        Repository.init(backend, host_key=host_key, recovery_public=None, host="web1")


def test_open_missing_repository(tmp_path, host_key):
    with pytest.raises(RepositoryNotFound) as ei:
        Repository.open(LocalBackend(tmp_path / "none"), host_key=host_key)
    assert ei.value.exit_code == 9


def test_wrong_key_is_no_matching_slot(backend, repo):
    with pytest.raises(NoMatchingKeySlot) as ei:
        Repository.open(backend, host_key=os.urandom(32))
    assert ei.value.exit_code == 6
    with pytest.raises(NoMatchingKeySlot):
        Repository.open(backend, recovery_private=X25519PrivateKey.generate())
    with pytest.raises(NoMatchingKeySlot):
        Repository.open(backend)


def test_recovery_key_restores_without_host_key(backend, repo, recovery):
    """A dead host's data opens with the organisation's recovery key alone (DESIGN "Keys")."""
    sid = backup(repo, {b"a": rnd(50_000)})
    r2 = Repository.open(backend, recovery_private=recovery)
    assert restore(r2, sid) == {b"a": rnd(50_000)}


def test_slots_listed_by_fingerprint_without_secrets(repo, host_key, recovery):
    slots = repo.slots()
    assert sorted(s["type"] for s in slots) == ["host", "recovery"]
    fps = {s["fingerprint"] for s in slots}
    assert fps == {keys.host_fingerprint(host_key), keys.recovery_fingerprint(recovery)}
    blob = json.dumps(slots)
    assert host_key.hex() not in blob


def test_add_and_remove_slots(backend, repo, host_key):
    new_key = os.urandom(32)
    fp = repo.add_host_slot(new_key)
    assert Repository.open(backend, host_key=new_key).id == repo.id
    repo.remove_slot(fp)
    with pytest.raises(NoMatchingKeySlot):
        Repository.open(backend, host_key=new_key)


def test_last_slot_cannot_be_removed(backend, host_key):
    repo = Repository.init(backend, host_key=host_key, recovery_public=None, host="h")
    with pytest.raises(UsageError):
        repo.remove_slot(keys.host_fingerprint(host_key))


def test_recovery_public_accepts_pem(backend, host_key, recovery):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = recovery.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    repo = Repository.init(backend, host_key=host_key, recovery_public=pem, host="h")
    assert Repository.open(backend, recovery_private=recovery).id == repo.id


def test_tampered_config_detected_after_unlock(backend, host_key, repo):
    raw = bytearray(backend.load("config"))
    raw[40] ^= 0x01  # chunker avg size
    backend.store("config", bytes(raw))
    with pytest.raises((AuthenticationFailed, FormatError)):
        Repository.open(backend, host_key=host_key)
    raw[40] ^= 0x01
    raw[51] ^= 0x01  # pack size: still parses, only the MAC catches it
    backend.store("config", bytes(raw))
    with pytest.raises(AuthenticationFailed):
        Repository.open(backend, host_key=host_key)


def test_tampered_slot_detected(backend, host_key, repo):
    name = "keys/" + keys.host_fingerprint(host_key)
    raw = bytearray(backend.load(name))
    raw[-1] ^= 1
    backend.store(name, bytes(raw))
    with pytest.raises(AuthenticationFailed):
        Repository.open(backend, host_key=host_key)


def test_no_plaintext_on_target(backend, repo):
    """ENC-REST: file content and file names never appear in stored objects."""
    secret = b"TOP-SECRET-PAYROLL-" * 500
    backup(repo, {b"finance/payroll.csv": secret})
    for info in backend.list(""):
        data = backend.load(info.name)
        assert b"TOP-SECRET-PAYROLL" not in data
        assert b"payroll.csv" not in data


# --- blobs -----------------------------------------------------------------------------
def test_blob_roundtrip_dedup_and_flush(backend, host_key, repo):
    data = rnd(10_000)
    bid, new = repo.add_blob("data", data)
    assert new and bid == repo.blob_id(data) and len(bid) == 32
    assert repo.add_blob("data", data) == (bid, False)
    assert repo.has_blob(bid) and repo.has_blob(bid.hex())
    assert repo.load_blob(bid) == data  # from the open pack
    repo.flush()
    assert backend.list("index/")
    r2 = Repository.open(backend, host_key=host_key)
    assert r2.has_blob(bid) and r2.load_blob(bid.hex()) == data
    assert r2.add_blob("data", data)[1] is False


def test_blob_id_is_keyed(backend, repo, tmp_path):
    other = Repository.init(LocalBackend(tmp_path / "other"), host_key=os.urandom(32), recovery_public=None, host="x")
    assert repo.blob_id(b"same") != other.blob_id(b"same")


def test_missing_blob(repo):
    with pytest.raises(BlobNotFound):
        repo.load_blob(b"\0" * 32)
    with pytest.raises(FormatError):
        repo.load_blob("zz")
    with pytest.raises(ValueError):
        repo.add_blob("bogus", b"x")


def test_packs_are_sealed_at_target_size(backend, repo):
    for i in range(40):
        repo.add_blob("data", rnd(8000, seed=i))
    assert len(backend.list("packs/")) >= 3  # 64 KiB packs
    repo.flush()
    for info in backend.list("packs/"):
        assert info.name.split("/")[-1] == crypto.sha256_hex(backend.load(info.name))
        assert info.name.split("/")[1] == info.name.split("/")[2][:2]


def test_compressible_and_empty_blobs(repo):
    for data in (b"", b"a" * 100_000, b"x"):
        bid, _ = repo.add_blob("data", data)
        assert repo.load_blob(bid) == data
    repo.flush()
    assert repo.check(read_data=1.0)["status"] == "ok"


# --- trees and snapshots ------------------------------------------------------------------
def test_tree_roundtrip_non_utf8(repo):
    entries = [
        {"path": b"dir", "type": "dir", "mode": 0o755, "uid": 0, "gid": 0, "user": "root", "group": "root",
         "mtime_ns": 1, "ctime_ns": 2, "ino": 3, "dev": 4},
        {"path": b"dir/caf\xe9-latin1", "type": "file", "mode": 0o644, "size": 0, "content": []},
        {"path": "dir/ünïcode".encode(), "type": "symlink", "target": b"../\xff\xfe target"},
        {"path": b"dir/hard", "type": "hardlink", "target": b"dir/caf\xe9-latin1"},
    ]
    ids = repo.write_tree(entries)
    assert list(repo.read_tree(ids)) == entries


def test_tree_rejects_unsafe_paths(repo):
    for bad in (b"/etc/passwd", b"a/../b", b"./a", b"a//b", b"", b"a\0b"):
        with pytest.raises(FormatError):
            repo.write_tree([{"path": bad, "type": "file"}])


def test_large_tree_spans_blobs_and_dedups(repo):
    entries = [{"path": f"d/file{i:06d}".encode(), "type": "file", "size": i, "content": []} for i in range(3000)]
    ids1 = repo.write_tree(entries)
    assert len(ids1) > 3
    entries[2500]["size"] = -1
    ids2 = repo.write_tree(entries)
    assert list(repo.read_tree(ids2)) == entries
    assert len(set(ids1) & set(ids2)) >= len(ids1) - 3  # only the changed stretch differs


def test_snapshot_save_list_load(backend, host_key, repo):
    s1 = backup(repo, {b"a": rnd(30_000, 1)}, start="2026-12-01T00:00:00Z")
    s2 = backup(repo, {b"a": rnd(30_000, 2)}, start="2026-12-02T00:00:00Z", type="incremental", parent=s1)
    r2 = Repository.open(backend, host_key=host_key)
    snaps = r2.list_snapshots()
    assert [s["id"] for s in snaps] == [s1, s2]
    assert snaps[1]["parent"] == s1 and snaps[1]["type"] == "incremental"
    assert r2.load_snapshot(s2[:10])["id"] == s2
    assert restore(r2, s1) == {b"a": rnd(30_000, 1)}
    with pytest.raises(SnapshotNotFound):
        r2.load_snapshot("ffffffff" if not s1.startswith("ffffffff") else "00000000")
    with pytest.raises(SnapshotNotFound):
        r2.load_snapshot("not-hex")
    r2.snapshot_ids = lambda: ["ab" + "0" * 62, "ab" + "1" * 62]  # type: ignore[method-assign]
    with pytest.raises(AmbiguousSnapshotId):
        r2.load_snapshot("ab")


def test_snapshot_requires_stored_tree(repo):
    with pytest.raises(BlobNotFound):
        repo.save_snapshot({"tree": ["00" * 32]})
    with pytest.raises(FormatError):
        repo.save_snapshot({"host": "x"})


def test_forget_snapshot(repo):
    sid = backup(repo, {b"a": b"1"})
    repo.forget_snapshot(sid)
    assert repo.list_snapshots() == []


def test_dedup_across_snapshots(backend, repo):
    data = rnd(200_000, 7)
    backup(repo, {b"a": data})
    before = repo.stats()
    backup(repo, {b"a": data, b"b": data})
    after = repo.stats()
    assert after["blobs"] - before["blobs"] <= 2  # at most a new tree blob or two


# --- locks ---------------------------------------------------------------------------------
def test_lock_conflicts_and_release(backend, host_key, repo):
    other = Repository.open(backend, host_key=host_key, host="other-host")
    with repo.lock(exclusive=True):
        assert len(backend.list("locks/")) == 1
        with pytest.raises(LockedError) as ei, other.lock(exclusive=False):
            pass
        assert "web1" in str(ei.value) and ei.value.exit_code == 4
        assert len(backend.list("locks/")) == 1  # the loser removed its own lock
    assert backend.list("locks/") == []
    with repo.lock(exclusive=False), other.lock(exclusive=False), pytest.raises(LockedError), \
            other.lock(exclusive=True):
        pass


def test_stale_locks_are_ignored(backend, repo):
    import time

    backend.store("locks/old", json.dumps({"host": "far", "pid": 1, "time": time.time() - 7200,
                                           "exclusive": True}).encode())
    backend.store("locks/dead", json.dumps({"host": "web1", "pid": 2**22 + 12345, "time": time.time(),
                                            "exclusive": True}).encode())
    with repo.lock():
        pass
    names = [i.name for i in backend.list("locks/")]
    assert names == ["locks/old"]  # a dead local pid's lock is removed; another host's is only ignored


def test_unreadable_lock_counts_as_held(backend, repo):
    backend.store("locks/garbage", b"not json")
    with pytest.raises(LockedError), repo.lock():
        pass


# --- check -------------------------------------------------------------------------------
def test_check_ok(repo):
    backup(repo, {b"a": rnd(100_000), b"b": rnd(5000, 3)})
    res = repo.check()
    assert res["status"] == "ok" and res["problems"] == [] and res["packs_checked"] >= 1
    assert res["blobs_checked"] == 0
    res = repo.check(read_data=1.0)
    assert res["status"] == "ok" and res["blobs_checked"] == repo.stats()["blobs"]


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_flipped_byte_in_pack_is_named(backend, repo, where):
    """VER-CHECKSUM: one flipped byte anywhere in a pack is found and the pack named."""
    backup(repo, {b"a": rnd(100_000)})
    name = max(backend.list("packs/"), key=lambda i: i.size).name
    raw = bytearray(backend.load(name))
    pos = {"start": 0, "middle": len(raw) // 2, "end": len(raw) - 1}[where]
    raw[pos] ^= 0x40
    backend.store(name, bytes(raw))
    seen = []
    res = repo.check(on_problem=seen.append)
    assert res["status"] == "damaged"
    assert any(p["object"] == name for p in res["problems"]) and seen == res["problems"]
    res = repo.check(read_data=1.0)
    assert [p for p in res["problems"] if p["object"] == name]


def test_flipped_byte_in_blob_fails_load(backend, host_key, repo):
    bid, _ = repo.add_blob("data", rnd(20_000))
    repo.flush()
    name = backend.list("packs/")[0].name
    raw = bytearray(backend.load(name))
    raw[100] ^= 1
    backend.store(name, bytes(raw))
    r2 = Repository.open(backend, host_key=host_key)
    with pytest.raises(AuthenticationFailed) as ei:
        r2.load_blob(bid)
    assert name in str(ei.value)


def test_missing_pack_and_damaged_index_reported(backend, host_key, repo):
    backup(repo, {b"a": rnd(100_000)})
    pack = backend.list("packs/")[0].name
    backend.delete(pack)
    res = Repository.open(backend, host_key=host_key).check()
    assert res["status"] == "damaged"
    assert any(p["object"] == pack and "missing" in p["problem"] for p in res["problems"])
    idx = backend.list("index/")[0].name
    raw = bytearray(backend.load(idx))
    raw[-3] ^= 1
    backend.store(idx, bytes(raw))
    r3 = Repository.open(backend, host_key=host_key)  # opens; the damaged index is skipped
    assert r3.load_problems and r3.load_problems[0]["object"] == idx
    res = r3.check()
    assert any(p["object"] == idx for p in res["problems"])
    assert any(p["object"].startswith("snapshots/") for p in res["problems"])


def test_damaged_snapshot_named(backend, repo):
    sid = backup(repo, {b"a": b"x"})
    name = f"snapshots/{sid}"
    raw = bytearray(backend.load(name))
    raw[70] ^= 1
    backend.store(name, bytes(raw))
    assert repo.list_snapshots() == []
    res = repo.check()
    assert [p["object"] for p in res["problems"]] == [name]
    with pytest.raises(IntegrityError):
        repo.load_snapshot(sid)


def test_read_data_subset(repo):
    for i in range(30):
        repo.add_blob("data", rnd(9000, seed=i))
    repo.flush()
    n = repo.stats()["packs"]
    res = repo.check(read_data=0.25)
    assert res["status"] == "ok" and 0 < res["blobs_checked"] < 30 and res["packs_checked"] == n


# --- crash safety -------------------------------------------------------------------------
def test_interrupted_backup_leaves_consistent_repo(backend, host_key, repo):
    """kill -9 after packs were stored but before the index/snapshot: check passes, next backup works."""
    s1 = backup(repo, {b"keep": rnd(50_000, 1)})
    crashed = Repository.open(backend, host_key=host_key)
    for i in range(30):
        crashed.add_blob("data", rnd(9000, seed=100 + i))  # seals packs, never flushes
    assert len(backend.list("packs/")) > repo.stats()["packs"] - 30
    del crashed  # the process "dies": no flush, no index
    fresh = Repository.open(backend, host_key=host_key)
    res = fresh.check(read_data=1.0)
    assert res["status"] == "ok", res["problems"]
    assert res["unreferenced_packs"] >= 1 and res["notes"]
    # The blobs of the lost packs are simply stored again.
    s2 = backup(fresh, {b"new": b"".join(rnd(9000, seed=100 + i) for i in range(30))})
    assert restore(fresh, s2)[b"new"] == b"".join(rnd(9000, seed=100 + i) for i in range(30))
    assert restore(fresh, s1) == {b"keep": rnd(50_000, 1)}
    assert fresh.check(read_data=1.0)["status"] == "ok"


def test_index_written_periodically(backend, host_key, repo, monkeypatch):
    from fleetsafe.repo import repository

    monkeypatch.setattr(repository, "INDEX_EVERY_PACKS", 2)
    for i in range(30):
        repo.add_blob("data", rnd(9000, seed=i))
    assert backend.list("index/")  # without any flush
    assert Repository.open(backend, host_key=host_key).stats()["blobs"] > 0


def test_failed_pack_store_keeps_blobs(backend, repo, monkeypatch):
    from fleetsafe.errors import StorageFull

    calls = {"n": 0}
    real = backend.store

    def flaky(name, data):
        if name.startswith("packs/") and calls["n"] == 0:
            calls["n"] += 1
            raise StorageFull("disk full", backend="test")
        return real(name, data)

    monkeypatch.setattr(backend, "store", flaky)
    data = rnd(20_000)
    bid, _ = repo.add_blob("data", data)
    with pytest.raises(StorageFull):
        repo.flush()
    repo.flush()
    assert repo.load_blob(bid) == data
    assert repo.check(read_data=1.0)["status"] == "ok"


def test_interrupted_init_can_be_repeated(backend, host_key, recovery):
    """init writes slots first, config last: without config it simply runs again."""
    first = Repository.init(backend, host_key=host_key, recovery_public=crypto.x25519_public_bytes(recovery),
                            host="h")
    backend.delete("config")  # as if init died before its last write
    other_recovery = X25519PrivateKey.generate()
    repo = Repository.init(backend, host_key=host_key,
                           recovery_public=crypto.x25519_public_bytes(other_recovery), host="h")
    assert repo.id != first.id and len(repo.slots()) == 2  # the stale recovery slot is gone
    assert Repository.open(backend, recovery_private=other_recovery).id == repo.id
    with pytest.raises(NoMatchingKeySlot):
        Repository.open(backend, recovery_private=recovery)


def test_init_refuses_data_without_config(backend, host_key, repo):
    backup(repo, {b"a": b"data"})
    backend.delete("config")
    with pytest.raises(RepositoryExists):
        Repository.init(backend, host_key=host_key, recovery_public=None, host="h")
    assert backend.list("keys/")  # nothing was deleted


def test_rebuild_index_adopts_unreferenced_packs(backend, host_key, repo):
    crashed = Repository.open(backend, host_key=host_key)
    data = [rnd(9000, seed=200 + i) for i in range(20)]
    ids = [crashed.add_blob("data", d)[0] for d in data]  # packs sealed, never indexed
    del crashed
    fresh = Repository.open(backend, host_key=host_key)
    assert fresh.check()["unreferenced_packs"] >= 1
    res = fresh.rebuild_index()
    assert res["packs_added"] >= 1 and res["problems"] == []
    again = Repository.open(backend, host_key=host_key)
    sealed = [i for i in ids if again.has_blob(i)]
    assert sealed and all(again.load_blob(i) == data[ids.index(i)] for i in sealed)
    res = again.check(read_data=1.0)
    assert res["status"] == "ok" and res["unreferenced_packs"] == 0
    assert again.rebuild_index()["packs_added"] == 0


def test_compact_index(backend, host_key, repo):
    sids = [backup(repo, {b"f": rnd(20_000, seed=i)}) for i in range(4)]
    n = len(backend.list("index/"))
    assert n >= 4
    assert repo.compact_index() == n
    assert len(backend.list("index/")) == 1
    again = Repository.open(backend, host_key=host_key)
    assert again.check(read_data=1.0)["status"] == "ok"
    assert restore(again, sids[2]) == {b"f": rnd(20_000, seed=2)}
    assert again.compact_index() == 0


def test_quarantine_pack_drops_it_from_the_index_and_a_new_backup_heals(repo, backend, host_key) -> None:
    files = {b"a": rnd(50_000, 1), b"b": rnd(50_000, 2)}
    sid = backup(repo, files)
    data_packs = sorted({repo.index.get(bytes.fromhex(c)).pack
                         for e in repo.read_tree(repo.load_snapshot(sid)["tree"]) for c in e["content"]})
    bad = data_packs[0]
    out = repo.quarantine_packs([bad])
    assert out["quarantined"] == [f"packs/{bad[:2]}/{bad}"]
    assert backend.exists(f"quarantine/{bad}") and not backend.exists(f"packs/{bad[:2]}/{bad}")
    assert bad not in repo.index.packs
    # A fresh open sees the rewritten index: no entry points at the quarantined pack.
    again = Repository.open(backend, host_key=host_key)
    assert bad not in again.index.packs and not again.load_problems
    assert [s["id"] for s in again.incomplete_snapshots()] == [sid]
    # Content ids: storing the same files again makes the old snapshot whole.
    backup(again, files)
    assert again.incomplete_snapshots() == []
    assert restore(again, sid) == files
    assert again.check(read_data=1.0)["status"] == "ok"


def test_forget_missing_packs(repo, backend) -> None:
    backup(repo, {b"a": rnd(20_000, 3)})
    sha = next(iter(repo.index.packs))
    backend.delete(f"packs/{sha[:2]}/{sha}")
    assert repo.forget_missing_packs() == 1
    assert sha not in repo.index.packs
    assert repo.forget_missing_packs() == 0
