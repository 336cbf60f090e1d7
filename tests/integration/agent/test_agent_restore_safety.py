"""REST-SAFE against crafted snapshots: a snapshot written straight through the Repository API
with hostile tree entries must make ``fleetsafe restore`` write nothing outside its target.

The format layer already refuses ``..``/absolute paths when a tree is encoded, so those
snapshots are made from raw tree lines (what an attacker with the key could store).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Agent
from fleetsafe import keys
from fleetsafe.repo import Repository
from fleetsafe.storage.local import LocalBackend


def _open(agent: Agent) -> Repository:
    return Repository.open(LocalBackend(agent.repo), host_key=keys.load_host_key(agent.base / "keys" / "repo.key"),
                           host="testhost")


def _line(**fields: Any) -> bytes:
    base = {"gid": 0, "mode": 0o644, "mtime_ns": 0, "uid": 0, "ctime_ns": 0, "ino": 1, "dev": 1}
    base.update(fields)
    return json.dumps(base, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _save_raw(repo: Repository, lines: list[bytes]) -> str:
    blob, _ = repo.add_blob("tree", b"".join(lines))
    return repo.save_snapshot({"tree": [blob.hex()], "type": "full", "host": "testhost", "paths": ["/x"],
                               "start": "2030-01-01T00:00:00.000000Z", "end": "2030-01-01T00:00:00.000000Z",
                               "status": "success", "parent": None, "stats": {}, "errors": []})


def _save_entries(repo: Repository, entries: list[dict[str, Any]]) -> str:
    tree = repo.write_tree(entries)
    return repo.save_snapshot({"tree": tree, "type": "full", "host": "testhost", "paths": ["/x"],
                               "start": "2030-01-01T00:00:00.000000Z", "end": "2030-01-01T00:00:00.000000Z",
                               "status": "success", "parent": None, "stats": {}, "errors": []})


def _listing(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out.add(f"{p}:{st.st_mode}:{st.st_size}:{st.st_nlink}")
    return out


@pytest.fixture
def world(agent: Agent, tmp_path: Path) -> Iterator[tuple[Agent, Path, Path]]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"precious")
    yield agent, outside, tmp_path / "target"


def _data(repo: Repository, payload: bytes) -> str:
    bid, _ = repo.add_blob("data", payload)
    return bid.hex()


def _assert_refused_and_clean(agent: Agent, sid: str, outside: Path, target: Path) -> dict[str, Any]:
    before = _listing(outside)
    home_before = _listing(agent.base)
    r = agent.run("restore", sid, "--target-dir", str(target), expect=8)
    assert r.doc["error"] in ("restore_refused", "unsafe_path")
    assert _listing(outside) == before
    assert (outside / "victim").read_bytes() == b"precious"
    # nothing written anywhere: the target holds nothing, the host dir only gained audit lines
    assert not target.exists() or list(target.iterdir()) == []
    changed = {p.split(":")[0] for p in _listing(agent.base) ^ home_before}
    # allowed: the agent's own bookkeeping (audit log, state dir, repository lock objects)
    own = (str(agent.audit_log.parent), str(agent.state), str(agent.repo))
    assert {p for p in changed if not p.startswith(own)} == set()
    assert not any(p.startswith(str(agent.repo) + "/") and "/locks" not in p for p in changed)
    assert agent.events()[-1]["action"] == "restore" and agent.events()[-1]["status"] == "refused"
    return r.doc


@pytest.mark.parametrize(
    "hostile",
    [
        {"n": "../escape"},
        {"n": "a/../../escape"},
        {"n": "/tmp/absolute-escape"},
        {"n": "a//b"},
        {"n": "./a"},
        {"nb": base64.b64encode(b"a\x00b").decode()},
    ],
    ids=["dotdot", "inner-dotdot", "absolute", "empty-component", "dot", "nul"],
)
def test_hostile_paths_refused(world: tuple[Agent, Path, Path], hostile: dict[str, str]) -> None:
    agent, outside, target = world
    repo = _open(agent)
    cid = _data(repo, b"evil payload")
    lines = [_line(n="a", type="dir", mode=0o755), _line(type="file", size=12, content=[cid], **hostile)]
    sid = _save_raw(repo, lines)
    doc = _assert_refused_and_clean(agent, sid, outside, target)
    assert "integrity" in doc["message"] or "refused" in doc["message"]
    assert not Path("/tmp/absolute-escape").exists()


def test_symlinked_parent_refused(world: tuple[Agent, Path, Path]) -> None:
    agent, outside, target = world
    repo = _open(agent)
    cid = _data(repo, b"evil payload")
    entries = [
        {"path": b"d", "type": "dir", "mode": 0o755, "uid": 0, "gid": 0, "mtime_ns": 0},
        {"path": b"d/abs", "type": "symlink", "target": os.fsencode(outside), "mode": 0o777, "uid": 0, "gid": 0,
         "mtime_ns": 0},
        {"path": b"d/abs/victim", "type": "file", "size": 12, "content": [cid], "mode": 0o644, "uid": 0, "gid": 0,
         "mtime_ns": 0},
    ]
    sid = _save_entries(repo, entries)
    doc = _assert_refused_and_clean(agent, sid, outside, target)
    assert "parent d/abs is a symlink" in doc["message"]


def test_relative_symlink_parent_refused(world: tuple[Agent, Path, Path]) -> None:
    agent, outside, target = world
    repo = _open(agent)
    cid = _data(repo, b"evil payload")
    entries = [
        {"path": b"up", "type": "symlink", "target": b"../outside", "mode": 0o777, "uid": 0, "gid": 0, "mtime_ns": 0},
        {"path": b"up/new-file", "type": "file", "size": 12, "content": [cid], "mode": 0o644, "uid": 0, "gid": 0,
         "mtime_ns": 0},
    ]
    sid = _save_entries(repo, entries)
    _assert_refused_and_clean(agent, sid, outside, target)


def test_hardlink_target_outside_refused(world: tuple[Agent, Path, Path]) -> None:
    agent, outside, target = world
    repo = _open(agent)
    rel = os.path.relpath(outside / "victim", target)  # ../outside/victim
    lines = [_line(n="grab", type="hardlink", t=rel), _line(n="grab2", type="hardlink", t=str(outside / "victim"))]
    sid = _save_raw(repo, lines)
    _assert_refused_and_clean(agent, sid, outside, target)
    assert os.stat(outside / "victim").st_nlink == 1


def test_hardlink_to_symlink_links_the_symlink_itself(world: tuple[Agent, Path, Path]) -> None:
    agent, outside, target = world
    repo = _open(agent)
    entries = [
        {"path": b"s", "type": "symlink", "target": os.fsencode(outside / "victim"), "mode": 0o777, "uid": os.getuid(),
         "gid": os.getgid(), "mtime_ns": 0},
        {"path": b"h", "type": "hardlink", "target": b"s", "mode": 0o777, "uid": 0, "gid": 0, "mtime_ns": 0},
    ]
    sid = _save_entries(repo, entries)
    agent.run("restore", sid, "--target-dir", str(target))
    assert os.path.islink(target / "h") and os.path.islink(target / "s")
    assert os.stat(outside / "victim").st_nlink == 1
    assert (outside / "victim").read_bytes() == b"precious"


def test_existing_symlink_in_target_is_not_followed(world: tuple[Agent, Path, Path]) -> None:
    agent, outside, target = world
    (agent.src / "etc").mkdir()
    (agent.src / "etc" / "victim").write_bytes(b"from the backup")
    sid = agent.run("backup", "--type", "full").doc["snapshot_id"]
    # Someone planted a symlink where the restore will create its first directory.
    target.mkdir()
    first = str(agent.src).lstrip("/").split("/")[0]
    os.symlink(outside, target / first)
    for extra in ([], ["--overwrite"]):
        r = agent.run("restore", sid, "--target-dir", str(target), *extra, expect=8)
        assert "symlink" in r.doc["message"]
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_bytes() == b"precious"


def test_target_dir_symlink_refused(world: tuple[Agent, Path, Path]) -> None:
    agent, outside, target = world
    (agent.src / "f").write_bytes(b"x")
    sid = agent.run("backup", "--type", "full").doc["snapshot_id"]
    os.symlink(outside, target)
    agent.run("restore", sid, "--target-dir", str(target), expect=8)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
