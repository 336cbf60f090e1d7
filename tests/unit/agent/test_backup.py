"""fleetsafe.backup against a real repository on a local backend: per-path errors, hard links, incremental reuse."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from fleetsafe import backup as backup_mod
from fleetsafe.backup import BackupRequest, find_parent, run_backup
from fleetsafe.repo import Repository
from fleetsafe.restore import restore_snapshot
from fleetsafe.storage.local import LocalBackend


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalBackend(tmp_path / "repo"), host_key=os.urandom(32), recovery_public=None, host="h")


def _req(src: Path, kind: str = "full") -> BackupRequest:
    return BackupRequest(host="h", sources=[str(src)], backup_type=kind)


def _tree(repo: Repository, sid: str) -> dict[bytes, dict[str, Any]]:
    m = repo.load_snapshot(sid)
    return {e["path"]: e for e in repo.read_tree(m["tree"])}


def test_file_vanishing_during_the_run_is_partial(repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for n in ("a", "b", "c"):
        (src / n).write_bytes(n.encode() * 1000)
    real_open = backup_mod.open_for_read

    def vanish_b(path: bytes) -> Any:
        if path.endswith(b"/b"):
            os.unlink(path)  # really gone between the walk and the read: the OS says ENOENT
        return real_open(path)

    monkeypatch.setattr(backup_mod, "open_for_read", vanish_b)
    res = run_backup(repo, _req(src))
    assert res.status == "partial"
    assert res.errors == [{"path": str(src / "b"), "error": "No such file or directory"}]
    tree = _tree(repo, res.snapshot_id)
    rel = os.fsencode(src).lstrip(b"/")
    assert rel + b"/a" in tree and rel + b"/c" in tree and rel + b"/b" not in tree
    manifest = repo.load_snapshot(res.snapshot_id)
    assert manifest["status"] == "partial" and manifest["errors"] == res.errors


def test_hardlink_whose_first_path_failed_is_read_itself(repo: Repository, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"shared inode")
    os.link(src / "a", src / "b")
    real_open = backup_mod.open_for_read

    def deny_a(path: bytes) -> Any:
        if path.endswith(b"/a"):
            raise PermissionError(13, "Permission denied")
        return real_open(path)

    monkeypatch.setattr(backup_mod, "open_for_read", deny_a)
    res = run_backup(repo, _req(src))
    tree = _tree(repo, res.snapshot_id)
    rel = os.fsencode(src).lstrip(b"/")
    assert tree[rel + b"/b"]["type"] == "file"  # not a hard link to a path that is not in the snapshot
    assert res.hardlinks == 0 and res.errors[0]["error"] == "Permission denied"


def test_hardlinks_point_at_first_path(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "z").write_bytes(b"data")
    os.link(src / "z", src / "a")
    res = run_backup(repo, _req(src))
    tree = _tree(repo, res.snapshot_id)
    rel = os.fsencode(src).lstrip(b"/")
    assert tree[rel + b"/a"]["type"] == "file"  # "a" sorts first: it carries the content
    assert tree[rel + b"/z"] | {} == tree[rel + b"/z"] and tree[rel + b"/z"]["type"] == "hardlink"
    assert tree[rel + b"/z"]["target"] == rel + b"/a"


def test_changed_while_read_is_a_warning(repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "grow").write_bytes(b"x" * 1000)
    real_chunk = repo.chunk

    def chunk_and_append(stream: Any) -> Any:
        for c in real_chunk(stream):
            with open(src / "grow", "ab") as fh:
                fh.write(b"more")  # a log file growing while it is read
            yield c

    monkeypatch.setattr(repo, "chunk", chunk_and_append)
    res = run_backup(repo, _req(src))
    assert res.status == "success"
    assert any("changed while being read" in w for w in res.warnings)
    tree = _tree(repo, res.snapshot_id)
    entry = tree[os.fsencode(src / "grow").lstrip(b"/")]
    assert entry["size"] == sum(len(repo.load_blob(c)) for c in entry["content"])  # size = what was stored


def test_incremental_reuses_by_metadata_and_falls_back_to_full_without_parent(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(50_000))
    inc0 = run_backup(repo, _req(src, "incremental"))
    assert inc0.parent is None and inc0.files_read == 1
    assert any("no parent" in w for w in inc0.warnings)
    inc1 = run_backup(repo, _req(src, "incremental"))
    assert inc1.parent == inc0.snapshot_id and inc1.files_read == 0 and inc1.bytes_read == 0
    # another path set has its own parent chain
    other = tmp_path / "other"
    other.mkdir()
    assert find_parent(repo, "h", [str(other)]) is None
    out = tmp_path / "out"
    restore_snapshot(repo, inc1.snapshot_id, out)
    assert (out / str(src).lstrip("/") / "f").read_bytes() == (src / "f").read_bytes()


def test_bad_type_rejected(repo: Repository, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="full or incremental"):
        run_backup(repo, BackupRequest(host="h", sources=[str(tmp_path)], backup_type="weekly"))


def test_parent_cursor_merge_join_in_walk_order() -> None:
    from fleetsafe.backup import ParentCursor

    paths = [b"a", b"a/b", b"a/b/c", b"a/z", b"a-c", b"a.d", b"b"]  # walk order: component lists
    entries = [{"path": p, "type": "file" if p != b"a" else "dir", "size": 1} for p in paths]
    cur = ParentCursor(iter(entries))
    assert cur.lookup(b"a") is None  # a directory, not a file
    assert cur.lookup(b"a/b")["path"] == b"a/b"
    assert cur.lookup(b"a/b/new") is None  # not in the parent
    assert cur.lookup(b"a/z")["path"] == b"a/z"
    assert cur.lookup(b"a-c")["path"] == b"a-c"
    assert cur.lookup(b"b")["path"] == b"b"
    assert cur.lookup(b"c") is None
    assert ParentCursor(None).lookup(b"a") is None


def test_damaged_parent_tree_falls_back_to_reading(tmp_path: Path) -> None:
    from fleetsafe.backup import ParentCursor
    from fleetsafe.errors import IntegrityError

    def broken() -> Any:
        yield {"path": b"a", "type": "file"}
        raise IntegrityError("tree blob failed authentication")

    cur = ParentCursor(broken())
    assert cur.lookup(b"a") is not None
    assert cur.lookup(b"b") is None and cur.error and "unreadable" in cur.error
