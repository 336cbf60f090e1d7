"""Interrupted runs, failing and full targets, corruption: the repository stays consistent.

Crash safety (docs/format.md, "Crash safety"): packs are stored before the
index naming them, the index before the snapshot.  Whatever write is the last
to happen, the repository must check clean (unreferenced packs are notes,
not damage), earlier snapshots must restore, and the next backup must work.
VER-CHECKSUM: damage is found and the damaged object named.
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fleetsafe.chunker import ChunkerParams
from fleetsafe.errors import (
    AuthenticationFailed,
    BackendConnectionError,
    IntegrityError,
    StorageFull,
)
from fleetsafe.repo import Repository
from fleetsafe.storage.local import LocalBackend
from fleetsafe.storage.wrappers import FaultyBackend

SMALL = ChunkerParams(1024, 4096, 16384)
AGENT = Path(__file__).resolve().parents[3] / "agent"


def rnd(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def backup(repo: Repository, files: dict[bytes, bytes]) -> str:
    entries = []
    for path, data in sorted(files.items()):
        ids = [repo.add_blob("data", c)[0].hex() for c in repo.chunk(io.BytesIO(data))]
        entries.append({"path": path, "type": "file", "size": len(data), "content": ids})
    return repo.save_snapshot({"host": "h", "type": "full", "start": f"{time.time():.6f}", "status": "complete",
                               "tree": repo.write_tree(entries)})


def restore(repo: Repository, sid: str) -> dict[bytes, bytes]:
    m = repo.load_snapshot(sid)
    return {e["path"]: b"".join(repo.load_blob(c) for c in e["content"]) for e in repo.read_tree(m["tree"])}


def assert_healthy(backend, host_key, expected: dict[str, dict[bytes, bytes]]) -> Repository:
    repo = Repository.open(backend, host_key=host_key)
    res = repo.check(read_data=1.0)
    assert res["status"] == "ok", res["problems"]
    for sid, files in expected.items():
        assert restore(repo, sid) == files
    return repo


FILES_1 = {b"a": rnd(40_000, 1), b"b": rnd(3000, 2)}
FILES_2 = {b"a": rnd(40_000, 1), b"c": rnd(60_000, 3), b"d": b"x" * 20_000}


@pytest.fixture
def setup(tmp_path):
    inner = LocalBackend(tmp_path / "repo")
    host_key = os.urandom(32)
    repo = Repository.init(inner, host_key=host_key, recovery_public=None, host="h", params=SMALL,
                           pack_size=16 * 1024)
    sid1 = backup(repo, FILES_1)
    return inner, host_key, sid1


def _count_stores(inner, host_key) -> int:
    fb = FaultyBackend(inner)
    backup(Repository.open(fb, host_key=host_key), FILES_2)
    return fb.calls["store"]


@pytest.mark.parametrize("error", [BackendConnectionError, StorageFull])
def test_failure_at_every_write_point(tmp_path, error):
    """Make each store of a backup fail in turn; after each, the repository is healthy."""
    probe = LocalBackend(tmp_path / "probe")
    key = os.urandom(32)
    r = Repository.init(probe, host_key=key, recovery_public=None, host="h", params=SMALL, pack_size=16 * 1024)
    backup(r, FILES_1)
    total = _count_stores(probe, key)
    assert total >= 5
    for k in range(1, total + 1):
        inner = LocalBackend(tmp_path / f"r{k}")
        repo = Repository.init(inner, host_key=key, recovery_public=None, host="h", params=SMALL,
                               pack_size=16 * 1024)
        sid1 = backup(repo, FILES_1)
        fb = FaultyBackend(inner, fail_store_at=k, store_error=error)
        with pytest.raises(error):
            backup(Repository.open(fb, host_key=key), FILES_2)
        healthy = assert_healthy(inner, key, {sid1: FILES_1})
        sid2 = backup(healthy, FILES_2)  # the next run works
        assert_healthy(inner, key, {sid1: FILES_1, sid2: FILES_2})


def test_disk_full_midway_then_recovers(setup):
    inner, key, sid1 = setup
    fb = FaultyBackend(inner, full_after_bytes=50_000)
    with pytest.raises(StorageFull):
        backup(Repository.open(fb, host_key=key), {b"big": rnd(300_000, 9)})
    repo = assert_healthy(inner, key, {sid1: FILES_1})
    sid2 = backup(repo, {b"big": rnd(300_000, 9)})
    assert_healthy(inner, key, {sid1: FILES_1, sid2: {b"big": rnd(300_000, 9)}})


CHILD = textwrap.dedent("""
    import io, os, random, sys, time
    sys.path.insert(0, {agent!r})
    from fleetsafe.repo import Repository
    from fleetsafe.storage.local import LocalBackend
    repo = Repository.open(LocalBackend({root!r}), host_key=bytes.fromhex({key!r}))
    i = 0
    while True:
        data = random.Random(i).randbytes(50_000)
        ids = [repo.add_blob("data", c)[0].hex() for c in repo.chunk(io.BytesIO(data))]
        if i % 7 == 6:
            tree = repo.write_tree([{{"path": b"f", "type": "file", "content": ids}}])
            repo.save_snapshot({{"host": "h", "start": str(i), "tree": tree}})
        if i == 3:
            print("running", flush=True)
        i += 1
""")


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5])
def test_kill_9_mid_backup(setup, tmp_path, delay):
    """A real SIGKILL at an arbitrary moment: check passes, old data restores, next backup works."""
    inner, key, sid1 = setup
    code = CHILD.format(agent=str(AGENT), root=str(inner.root), key=key.hex())
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"running", proc.stderr.read() if proc.stderr else b""
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    repo = assert_healthy(inner, key, {sid1: FILES_1})
    for s in repo.list_snapshots():  # every snapshot the child completed is whole
        assert list(repo.read_tree(s["tree"]))
    sid2 = backup(repo, FILES_2)
    assert_healthy(inner, key, {sid1: FILES_1, sid2: FILES_2})


def test_leftover_temp_files_are_ignored(setup):
    inner, key, sid1 = setup
    pack = inner.list("packs/")[0].name
    tmp = inner.root / Path(pack).parent / ".tmp-half-written"
    tmp.write_bytes(b"partial")
    assert_healthy(inner, key, {sid1: FILES_1})


def test_truncated_pack_is_named(setup):
    inner, key, _ = setup
    pack = max(inner.list("packs/"), key=lambda i: i.size).name
    path = inner.root / pack
    path.write_bytes(path.read_bytes()[:-10])
    res = Repository.open(inner, host_key=key).check()
    assert res["status"] == "damaged"
    assert {p["object"] for p in res["problems"]} == {pack}


def test_corruption_on_the_wire_is_detected(setup):
    """A target returning altered bytes cannot make us accept them (ENC-TEST)."""
    inner, key, sid1 = setup
    repo = Repository.open(FaultyBackend(inner, flip_byte_on_load=60, corrupt_prefix="packs/"), host_key=key)
    manifest = repo.load_snapshot(sid1)
    with pytest.raises(IntegrityError):
        list(repo.read_tree(manifest["tree"]))
    res = repo.check(read_data=1.0)
    assert res["status"] == "damaged" and all(p["object"].startswith("packs/") or
                                              p["object"].startswith("snapshots/") for p in res["problems"])


def test_swapped_packs_detected(setup):
    """Two packs' contents exchanged (names kept): hashes no longer match names."""
    inner, key, _ = setup
    a, b = (i.name for i in inner.list("packs/")[:2])
    da, db = inner.load(a), inner.load(b)
    inner.store(a, db)
    inner.store(b, da)
    res = Repository.open(inner, host_key=key).check()
    assert {a, b} <= {p["object"] for p in res["problems"]}


def test_blob_moved_within_pack_fails_authentication(setup):
    """Index pointing at the wrong blob of an authentic pack: AAD/nonce binding catches it."""
    inner, key, _ = setup
    repo = Repository.open(inner, host_key=key)
    entries = [ie for _, ie in repo.index.items()]
    same_pack = [e for e in entries if e.pack == entries[0].pack]
    if len(same_pack) < 2:
        pytest.skip("need two blobs in one pack")
    from dataclasses import replace

    first, second = same_pack[0], same_pack[1]
    forged = replace(first, entry=replace(first.entry, offset=second.entry.offset, length=second.entry.length))
    repo.index._blobs[first.entry.blob_id] = forged
    with pytest.raises(AuthenticationFailed):
        repo.load_blob(first.entry.blob_id)
