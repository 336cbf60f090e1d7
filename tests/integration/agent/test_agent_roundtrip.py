"""CLI round trips: what goes in comes back byte for byte, with its metadata (FREQ-FULL, FREQ-INCR, REST-SAFE)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Agent, restored_root, tree_state

MTIME = 1_500_000_000_987_654_321


def populate(src: Path) -> None:
    (src / "etc" / "deep" / "er").mkdir(parents=True)
    (src / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")
    (src / "etc" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (src / "etc" / "empty").write_bytes(b"")
    (src / "etc" / "secret").write_bytes(b"top secret")
    os.chmod(src / "etc" / "secret", 0o600)
    (src / "etc" / "script.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "etc" / "script.sh", 0o4755)
    broot = os.fsencode(src / "etc")
    for raw in (b"caf\xe9", b"\xff\xfe-bin", "snowman-\u2603".encode(), b"new\nline"):
        with open(os.path.join(broot, raw), "wb") as fh:
            fh.write(b"name " + raw)
    os.mkdir(os.path.join(broot, b"dir-\xe9"))
    with open(os.path.join(broot, b"dir-\xe9", b"inner"), "wb") as fh:
        fh.write(b"inside a non-UTF-8 directory")
    os.symlink("hosts", src / "etc" / "rel-link")
    os.symlink("/nonexistent/absolute", src / "etc" / "abs-link")
    os.symlink(b"\xe9-target", os.path.join(broot, b"link-to-\xe9"))
    os.link(src / "etc" / "hosts", src / "etc" / "deep" / "hosts.hard")
    os.link(src / "etc" / "hosts", src / "etc" / "deep" / "er" / "hosts.hard2")
    os.mkfifo(src / "etc" / "fifo")
    (src / "etc" / "ignored.skip").write_bytes(b"excluded by the config")
    os.chmod(src / "etc" / "deep" / "er", 0o700)
    os.chmod(src / "etc" / "deep", 0o751)
    try:
        os.setxattr(src / "etc" / "secret", "user.classification", b"confidential")
        os.setxattr(src / "etc" / "deep", "user.owner-team", b"ops")
    except OSError:
        pass  # filesystem without user xattrs: the round trip still checks everything else
    if os.geteuid() == 0:
        # a file capability (what makes /usr/bin/ping work): lost by chown, must come back
        caps = bytes.fromhex("0100000200200000000000000000000000000000")  # v2, cap_net_raw permitted
        try:
            os.setxattr(src / "etc" / "script.sh", "security.capability", caps)
        except OSError:
            pass
    for p in [src / "etc" / "hosts", src / "etc" / "deep" / "er"]:
        os.utime(p, ns=(MTIME, MTIME), follow_symlinks=False)
    os.utime(src / "etc" / "rel-link", ns=(MTIME, MTIME), follow_symlinks=False)


def expected_state(src: Path) -> dict[bytes, tuple[object, ...]]:
    state = tree_state(src)
    state.pop(b"etc/ignored.skip")
    return state


def test_full_round_trip_everything(agent: Agent, tmp_path: Path) -> None:
    populate(agent.src)
    before = expected_state(agent.src)
    r = agent.run("backup", "--type", "full")
    d = r.doc
    assert d["status"] == "success" and d["type"] == "full" and d["errors"] == []
    assert d["hardlinks"] == 2 and d["symlinks"] == 3 and d["other"] == 1
    assert d["bytes_read"] == sum(os.path.getsize(p) for p in agent.src.rglob("*") if p.is_file() and not p.is_symlink()
                                  and p.name != "ignored.skip") - 2 * len(b"127.0.0.1 localhost\n")
    out = tmp_path / "restore"
    rr = agent.run("restore", d["snapshot_id"][:10], "--target-dir", str(out))
    assert rr.doc["status"] == "success" and rr.doc["errors"] == []
    assert rr.doc["snapshot_time"] == d["start"] and rr.doc["duration_seconds"] >= 0
    after = tree_state(restored_root(out, agent.src))
    assert after == before
    # hard links are links again, not copies
    root = restored_root(out, agent.src) / "etc"
    assert os.stat(root / "hosts").st_ino == os.stat(root / "deep" / "hosts.hard").st_ino
    assert os.stat(root / "hosts").st_nlink == 3
    if b"user.classification" in [n.encode() for n in os.listxattr(agent.src / "etc" / "secret")]:
        assert os.getxattr(root / "secret", "user.classification") == b"confidential"
    if os.geteuid() == 0 and "security.capability" in os.listxattr(agent.src / "etc" / "script.sh"):
        assert os.getxattr(root / "script.sh", "security.capability") == \
            os.getxattr(agent.src / "etc" / "script.sh", "security.capability")
        assert os.stat(root / "script.sh").st_mode & 0o7777 == 0o4755


@pytest.mark.skipif(os.geteuid() != 0, reason="restoring owners needs root")
def test_owners_round_trip_as_root(agent: Agent, tmp_path: Path) -> None:
    populate(agent.src)
    os.chown(agent.src / "etc" / "secret", 4242, 4343)
    os.chown(agent.src / "etc" / "rel-link", 4242, 4343, follow_symlinks=False)
    os.chown(agent.src / "etc" / "deep", 4444, 4545)
    before = expected_state(agent.src)
    owners_before = tree_state(agent.src, owners=True)
    sid = agent.run("backup", "--type", "full").doc["snapshot_id"]
    out = tmp_path / "restore"
    agent.run("restore", sid, "--target-dir", str(out))
    got = tree_state(restored_root(out, agent.src), owners=True)
    owners_before.pop(b"etc/ignored.skip")
    assert got == owners_before
    assert {k: v[:5] for k, v in got.items()} == before


def test_incremental_skips_unchanged_and_restores_completely(agent: Agent, tmp_path: Path) -> None:
    populate(agent.src)
    full = agent.run("backup", "--type", "full").doc
    inc1 = agent.run("backup", "--type", "incremental").doc
    # Nothing changed: not one byte re-read, every file reused, a complete snapshot.
    assert inc1["parent"] == full["snapshot_id"]
    assert inc1["bytes_read"] == 0 and inc1["files_read"] == 0
    assert inc1["files_reused"] == full["files"]
    assert inc1["bytes_added"] == 0

    # Change one file (same size!) and reset its mtime: ctime still gives it away.
    big = agent.src / "etc" / "big.bin"
    st = big.stat()
    data = bytearray(big.read_bytes())
    data[100] ^= 0xFF
    big.write_bytes(bytes(data))
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    (agent.src / "etc" / "added").write_bytes(b"new file")
    inc2 = agent.run("backup").doc  # --type defaults to incremental
    assert inc2["type"] == "incremental" and inc2["parent"] == inc1["snapshot_id"]
    assert inc2["files_read"] == 2
    assert inc2["bytes_read"] == len(data) + len(b"new file")
    assert 0 < inc2["bytes_added"] < len(data)  # dedup: only the changed chunk is new

    # A full backup re-reads everything even though nothing changed since.
    full2 = agent.run("backup", "--type", "full").doc
    assert full2["files_read"] == full2["files"] and full2["files_reused"] == 0 and full2["parent"] is None
    assert full2["bytes_added"] == 0

    # Every snapshot restores on its own, completely (no chains).
    out = tmp_path / "r2"
    agent.run("restore", inc2["snapshot_id"], "--target-dir", str(out))
    assert tree_state(restored_root(out, agent.src)) == expected_state(agent.src)


def test_restore_include_subset_and_default_staging_dir(agent: Agent) -> None:
    populate(agent.src)
    agent.run("backup", "--type", "full")
    etc = str(agent.src / "etc")
    # walk order puts etc/deep/er/hosts.hard2 first: it is the stored file, the others link to it
    r = agent.run("restore", "latest", "--include", f"{etc}/deep/hosts.hard", "--include", f"{etc}/secret")
    target = Path(r.doc["target_dir"])
    # REST-SAFE: by default a fresh staging directory under the state dir, never the live path
    assert target.parent == agent.state / "restore"
    rel = etc.lstrip("/")
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if not p.is_dir())
    assert files == [f"{rel}/deep/hosts.hard", f"{rel}/secret"]
    # the link's first path was not included: restored as a copy of it, with a warning
    assert (target / rel / "deep" / "hosts.hard").read_bytes() == b"127.0.0.1 localhost\n"
    assert any("copy" in w for w in r.doc["warnings"])
    # ancestors come with their own modes
    assert (target / rel / "deep").stat().st_mode & 0o777 == 0o751


def test_restore_never_overwrites_without_flag(agent: Agent, tmp_path: Path) -> None:
    populate(agent.src)
    sid = agent.run("backup", "--type", "full").doc["snapshot_id"]
    out = tmp_path / "restore"
    agent.run("restore", sid, "--target-dir", str(out))
    hosts = restored_root(out, agent.src) / "etc" / "hosts"
    hosts.write_bytes(b"local edit")
    r = agent.run("restore", sid, "--target-dir", str(out), expect=8)
    assert r.doc["error"] == "restore_refused"
    assert any(p["object"].endswith("etc/hosts") for p in r.doc["problems"])
    assert hosts.read_bytes() == b"local edit"
    agent.run("restore", sid, "--target-dir", str(out), "--overwrite")
    assert hosts.read_bytes() == b"127.0.0.1 localhost\n"
