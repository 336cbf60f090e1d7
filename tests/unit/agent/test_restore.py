"""fleetsafe.restore: REST-SAFE writer driven by hand-made tree entries and a dict of blobs."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fleetsafe.errors import EXIT_REFUSED, RestoreRefused
from fleetsafe.restore import (
    BlobCache,
    RestorePlan,
    RestoreWriter,
    check_integrity,
    plan_restore,
    split_rel_path,
)

MTIME = 1_600_000_000_123_456_789


class Blobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        cid = hashlib.sha256(data).hexdigest()
        self.data[cid] = data
        return cid

    def load(self, cid: str) -> bytes:
        return self.data[cid]


def d(path: bytes, mode: int = 0o755) -> dict[str, Any]:
    return {"path": path, "type": "dir", "mode": mode, "uid": 0, "gid": 0, "mtime_ns": MTIME}


def f(blobs: Blobs, path: bytes, data: bytes, mode: int = 0o644) -> dict[str, Any]:
    content = [blobs.put(data[i : i + 3]) for i in range(0, len(data), 3)]
    return {"path": path, "type": "file", "mode": mode, "uid": 0, "gid": 0, "mtime_ns": MTIME, "size": len(data), "content": content}


def link(path: bytes, target: bytes) -> dict[str, Any]:
    return {"path": path, "type": "symlink", "mode": 0o777, "uid": 0, "gid": 0, "mtime_ns": MTIME, "target": target}


def hard(path: bytes, target: bytes) -> dict[str, Any]:
    return {"path": path, "type": "hardlink", "mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": MTIME, "target": target}


def run(entries: list[dict[str, Any]], blobs: Blobs, target: Path, **kw: Any) -> Any:
    include = kw.pop("include", ())
    plan = plan_restore(entries, include)
    assert not check_integrity(plan, lambda c: c in blobs.data, BlobCache(blobs.load))
    w = RestoreWriter(target, **kw)
    conflicts = w.preflight(plan)
    if conflicts:
        raise RestoreRefused("conflicts", path=str(conflicts))
    return w.write(plan, blobs.load)


def snapshot(blobs: Blobs) -> list[dict[str, Any]]:
    return [
        d(b"etc"),
        f(blobs, b"etc/hosts", b"127.0.0.1 localhost\n"),
        f(blobs, b"etc/secret", b"s3cret", mode=0o600),
        hard(b"etc/hosts.hard", b"etc/hosts"),
        link(b"etc/localtime", b"/usr/share/zoneinfo/UTC"),
        d(b"etc/ro", mode=0o555),
        f(blobs, b"etc/ro/file", b"x"),
        f(blobs, b"etc/caf\xe9", b"latin"),
        f(blobs, b"etc/empty", b""),
        {"path": b"etc/pipe", "type": "fifo", "mode": 0o640, "uid": 0, "gid": 0, "mtime_ns": MTIME},
    ]


def test_round_trip_metadata(tmp_path: Path) -> None:
    blobs = Blobs()
    stats = run(snapshot(blobs), blobs, tmp_path / "t")
    root = os.fsencode(tmp_path / "t")
    assert (tmp_path / "t/etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert stat.S_IMODE(os.stat(tmp_path / "t/etc/secret").st_mode) == 0o600
    assert os.stat(tmp_path / "t/etc/hosts").st_ino == os.stat(tmp_path / "t/etc/hosts.hard").st_ino
    assert os.readlink(tmp_path / "t/etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert stat.S_IMODE(os.stat(tmp_path / "t/etc/ro").st_mode) == 0o555
    assert os.lstat(tmp_path / "t/etc").st_mtime_ns == MTIME  # dirs last: not bumped by children
    assert os.lstat(tmp_path / "t/etc/hosts").st_mtime_ns == MTIME
    assert os.lstat(tmp_path / "t/etc/localtime").st_mtime_ns == MTIME
    assert Path(os.fsdecode(os.path.join(root, b"etc/caf\xe9"))).read_bytes() == b"latin"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "t/etc/pipe").st_mode)
    assert (tmp_path / "t/etc/empty").read_bytes() == b""
    assert stats.files == 5 and stats.hardlinks == 1 and stats.symlinks == 1 and not stats.errors
    os.chmod(tmp_path / "t/etc/ro", 0o755)  # let pytest clean up


@pytest.mark.parametrize(
    "bad",
    [b"/etc/passwd", b"../escape", b"a/../../escape", b"a/./b", b"a//b", b"", b"a\0b", "str-path", b"."],
)
def test_unsafe_paths_refused_before_writing(tmp_path: Path, bad: Any) -> None:
    blobs = Blobs()
    entries = [d(b"a"), f(blobs, b"a/ok", b"fine"), f(blobs, b"x", b"evil")]
    entries[2]["path"] = bad
    with pytest.raises(RestoreRefused) as ei:
        plan_restore(entries)
    assert ei.value.exit_code == EXIT_REFUSED


def test_symlinked_parent_in_snapshot_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    blobs = Blobs()
    entries = [link(b"a", os.fsencode(outside)), f(blobs, b"a/pwned", b"evil")]
    with pytest.raises(RestoreRefused, match="parent a is a symlink"):
        plan_restore(entries)
    assert list(outside.iterdir()) == []


def test_symlink_created_earlier_is_never_followed(tmp_path: Path) -> None:
    # Even if planning were bypassed, the dir-fd walk refuses to pass through the link it made.
    outside = tmp_path / "outside"
    outside.mkdir()
    blobs = Blobs()
    entries = [link(b"a", os.fsencode(outside)), f(blobs, b"a/pwned", b"evil"), f(blobs, b"ok", b"ok")]
    plan = RestorePlan.unchecked(entries)
    w = RestoreWriter(tmp_path / "t")
    stats = w.write(plan, blobs.load)
    assert list(outside.iterdir()) == []
    assert [e["path"] for e in stats.errors] == ["a/pwned"]
    assert (tmp_path / "t/ok").read_bytes() == b"ok"


def test_existing_symlink_in_target_refused_even_with_overwrite(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "t").mkdir()
    os.symlink(outside, tmp_path / "t" / "etc")
    blobs = Blobs()
    for overwrite in (False, True):
        with pytest.raises(RestoreRefused):
            run(snapshot(blobs), blobs, tmp_path / "t", overwrite=overwrite)
    assert list(outside.iterdir()) == []


def test_never_overwrites_without_flag(tmp_path: Path) -> None:
    blobs = Blobs()
    entries = [d(b"etc"), f(blobs, b"etc/hosts", b"new")]
    (tmp_path / "t/etc").mkdir(parents=True)
    (tmp_path / "t/etc/hosts").write_bytes(b"old")
    with pytest.raises(RestoreRefused, match="exists"):
        run(entries, blobs, tmp_path / "t")
    assert (tmp_path / "t/etc/hosts").read_bytes() == b"old"
    run(entries, blobs, tmp_path / "t", overwrite=True)
    assert (tmp_path / "t/etc/hosts").read_bytes() == b"new"
    assert not [p for p in (tmp_path / "t/etc").iterdir() if p.name.startswith(".fleetsafe")]


def test_overwrite_replaces_symlink_not_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "t").mkdir()
    os.symlink(victim, tmp_path / "t" / "hosts")
    blobs = Blobs()
    run([f(blobs, b"hosts", b"restored")], blobs, tmp_path / "t", overwrite=True)
    assert victim.read_bytes() == b"precious"
    assert not os.path.islink(tmp_path / "t/hosts")
    assert (tmp_path / "t/hosts").read_bytes() == b"restored"


def test_include_subset_with_ancestors_and_promoted_hardlink(tmp_path: Path) -> None:
    blobs = Blobs()
    entries = snapshot(blobs)
    stats = run(entries, blobs, tmp_path / "t", include=["/etc/hosts.hard", "etc/ro"])
    assert sorted(p.name for p in (tmp_path / "t/etc").iterdir()) == ["hosts.hard", "ro"]
    assert (tmp_path / "t/etc/hosts.hard").read_bytes() == b"127.0.0.1 localhost\n"
    assert any("restored as a copy" in w for w in stats.warnings)
    os.chmod(tmp_path / "t/etc/ro", 0o755)


def test_include_matching_nothing_is_not_found() -> None:
    from fleetsafe.errors import EXIT_NOT_FOUND
    from fleetsafe.restore import IncludeNotFound

    with pytest.raises(IncludeNotFound, match="/nope matches nothing") as exc:
        plan_restore([d(b"etc")], ["/nope"])
    assert exc.value.exit_code == EXIT_NOT_FOUND and exc.value.kind == "path_not_found"


def test_hardlink_to_outside_or_later_refused() -> None:
    blobs = Blobs()
    with pytest.raises(RestoreRefused):
        plan_restore([hard(b"x", b"../../etc/shadow")])
    with pytest.raises(RestoreRefused):
        plan_restore([hard(b"x", b"y"), f(blobs, b"y", b"later")])
    with pytest.raises(RestoreRefused):
        plan_restore([d(b"y"), hard(b"x", b"y")])


def test_duplicate_path_refused() -> None:
    blobs = Blobs()
    with pytest.raises(RestoreRefused, match="duplicate"):
        plan_restore([f(blobs, b"x", b"1"), link(b"x", b"/etc/shadow")])


def test_integrity_problems_listed_before_writing(tmp_path: Path) -> None:
    blobs = Blobs()
    entries = [f(blobs, b"x", b"abcdef")]
    missing = entries[0]["content"][1]
    del blobs.data[missing]
    plan = plan_restore(entries)
    problems = check_integrity(plan, lambda c: c in blobs.data, BlobCache(blobs.load))
    assert problems == [{"object": missing, "problem": "blob not in the index"}]


def test_size_mismatch_is_an_error_and_leaves_no_file(tmp_path: Path) -> None:
    blobs = Blobs()
    e = f(blobs, b"x", b"abc")
    e["size"] = 99
    w = RestoreWriter(tmp_path / "t")
    stats = w.write(plan_restore([e]), blobs.load)
    assert stats.errors and not (tmp_path / "t/x").exists()


def test_split_rel_path() -> None:
    assert split_rel_path(b"a/b") == [b"a", b"b"]


def test_blob_cache_budget() -> None:
    loads: list[str] = []
    cache = BlobCache(lambda c: (loads.append(c), b"x" * 10)[1], budget=15)
    cache.prefetch("a")
    cache.prefetch("b")  # over budget: not kept
    cache.load("a")
    cache.load("b")
    assert loads == ["a", "b", "b"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owners_restored_as_root(tmp_path: Path) -> None:
    blobs = Blobs()
    e = f(blobs, b"x", b"abc", mode=0o4755)
    e["uid"], e["gid"] = 1234, 2345
    s = link(b"l", b"x")
    s["uid"], s["gid"] = 1234, 2345
    run([e, s], blobs, tmp_path / "t")
    st = os.lstat(tmp_path / "t/x")
    assert (st.st_uid, st.st_gid) == (1234, 2345)
    assert stat.S_IMODE(st.st_mode) == 0o4755  # mode after chown: set-uid survives
    assert os.lstat(tmp_path / "t/l").st_uid == 1234


def test_symlink_listed_after_its_children_refused() -> None:
    # A crafted tree may list "a/x" before "a" -> /etc; order must not matter.
    blobs = Blobs()
    with pytest.raises(RestoreRefused, match="has entries below it"):
        plan_restore([f(blobs, b"a/x", b"evil"), link(b"a", b"/etc")])


def test_plan_streams_its_source_again_for_each_pass(tmp_path: Path) -> None:
    blobs = Blobs()
    entries = snapshot(blobs)
    calls = []

    def source() -> Any:
        calls.append(1)
        return iter(entries)

    plan = plan_restore(source)
    assert len(calls) == 1  # validation only; nothing kept but paths and types
    w = RestoreWriter(tmp_path / "t")
    assert w.preflight(plan) == []
    w.write(plan, blobs.load)
    assert len(calls) == 3
    os.chmod(tmp_path / "t/etc/ro", 0o755)


def test_compare_samples_outcomes(tmp_path: Path) -> None:
    import random

    from fleetsafe.sample import choose_sample, compare_samples

    live = tmp_path / "live"
    live.mkdir()
    for n in ("same", "rotten", "edited", "gone"):
        (live / n).write_bytes(b"original")
    meta = {n: os.lstat(live / n) for n in ("same", "rotten", "edited", "gone")}
    restored = tmp_path / "restored"
    rel = os.fsencode(live).lstrip(b"/")
    (restored / os.fsdecode(rel)).mkdir(parents=True)
    for n in ("same", "rotten", "edited", "gone"):
        (restored / os.fsdecode(rel) / n).write_bytes(b"original" if n != "rotten" else b"ORIGINAL")
    (live / "edited").write_bytes(b"new text")
    (live / "gone").unlink()
    entries = [{"path": rel + b"/" + n.encode(), "type": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "ctime_ns": st.st_ctime_ns, "ino": st.st_ino} for n, st in meta.items()]
    got = {s["path"].rsplit("/", 1)[-1]: s["live"] for s in compare_samples(restored, entries)}
    assert got == {"same": "match", "rotten": "differs", "edited": "changed", "gone": "missing"}
    # reservoir sampling picks only regular files, k of them, within --include
    pool = entries + [{"path": b"d", "type": "dir"}]
    picked = choose_sample(pool, 2, rng=random.Random(1))
    assert len(picked) == 2 and all(p["type"] == "file" for p in picked)
    assert choose_sample(pool, 9, include=["/nope"]) == []


def test_xattrs_restored_best_effort(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.p", b"1")
    except OSError:
        pytest.skip("filesystem without user xattrs")
    blobs = Blobs()
    e = f(blobs, b"x", b"abc")
    e["xattrs"] = {"user.comment": "AGJpbmFyef8=", "bogus.namespace": "eA==", "security.selinux": "eA=="}
    dd = d(b"dir")
    dd["xattrs"] = {"user.dir": "eA=="}
    stats = RestoreWriter(tmp_path / "t").write(plan_restore([dd, e]), blobs.load)
    assert os.getxattr(tmp_path / "t/x", "user.comment") == b"\x00binary\xff"
    assert os.getxattr(tmp_path / "t/dir", "user.dir") == b"x"
    assert os.lstat(tmp_path / "t/x").st_mtime_ns == MTIME  # mtime set after the xattrs
    assert any("bogus.namespace" in w for w in stats.warnings) and not stats.errors
    assert not any("selinux" in w for w in stats.warnings)


def test_zero_chunks_become_holes(tmp_path: Path) -> None:
    blobs = Blobs()
    zeros = bytes(1024 * 1024)
    e = {"path": b"sparse", "type": "file", "mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": MTIME,
         "size": 3 * len(zeros) + 5, "content": [blobs.put(zeros), blobs.put(b"12345"), blobs.put(zeros), blobs.put(zeros)]}
    e["size"] = 3 * len(zeros) + 5
    RestoreWriter(tmp_path / "t").write(plan_restore([e]), blobs.load)
    data = (tmp_path / "t/sparse").read_bytes()
    assert data == zeros + b"12345" + zeros + zeros
    st = os.stat(tmp_path / "t/sparse")
    assert st.st_blocks * 512 < len(zeros)  # holes, not 3 MiB of written zeros


def test_disk_full_aborts_instead_of_failing_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno as errno_

    from fleetsafe.restore import RestoreAborted

    blobs = Blobs()
    entries = [f(blobs, f"f{i}".encode(), b"data") for i in range(5)]
    real_write = os.write
    calls = []

    def full(fd: int, data: Any) -> int:
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno_.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("fleetsafe.restore.os.write", full)
    w = RestoreWriter(tmp_path / "t")
    with pytest.raises(RestoreAborted, match="after 1 file"):  # f() stores 3-byte chunks: 2 writes a file
        w.write(plan_restore(entries), blobs.load)
    assert len(calls) == 3  # stopped at the first ENOSPC, did not try the other files
