"""fleetsafe.fsread: metadata walk in tree order, never following symlinks."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from fleetsafe.fsread import Walker, WalkOptions, normalise_sources, open_for_read, walk


def _tree(root: Path) -> None:
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "a.txt").write_bytes(b"hello")
    (root / "d" / "b.tmp").write_bytes(b"tmp")
    (root / "d" / "sub" / "c").write_bytes(b"c")
    (root / "d-x").write_bytes(b"sibling")
    os.symlink("/etc/passwd", root / "d" / "link")
    os.mkfifo(root / "d" / "fifo")
    os.link(root / "d" / "a.txt", root / "d" / "sub" / "hard")
    with open(os.path.join(os.fsencode(root / "d"), b"caf\xe9"), "wb") as fh:
        fh.write(b"latin-1 name")


def _rel(root: Path, p: bytes) -> bytes:
    return p[len(os.fsencode(root)) + 1 :]


def test_walk_order_types_and_bytes(tmp_path: Path) -> None:
    _tree(tmp_path)
    errors: list[tuple[bytes, BaseException]] = []
    items = list(walk([str(tmp_path / "d"), str(tmp_path / "d-x")], WalkOptions(), lambda p, e: errors.append((p, e))))
    assert not errors
    rels = [_rel(tmp_path, i.abspath) for i in items if i.abspath.startswith(os.fsencode(tmp_path) + b"/")]
    # pre-order, siblings sorted by bytes: the whole "d" subtree before "d-x"
    assert rels == [b"d", b"d/a.txt", b"d/b.tmp", b"d/caf\xe9", b"d/fifo", b"d/link", b"d/sub", b"d/sub/c", b"d/sub/hard", b"d-x"]
    by = {_rel(tmp_path, i.abspath): i for i in items}
    assert by[b"d/link"].entry["type"] == "symlink" and by[b"d/link"].entry["target"] == b"/etc/passwd"
    assert by[b"d/fifo"].entry["type"] == "fifo"
    assert by[b"d"].entry["type"] == "dir"
    f = by[b"d/a.txt"].entry
    assert f["type"] == "file" and f["size"] == 5 and f["content"] == []
    assert by[b"d/a.txt"].nlink == 2
    assert f["path"] == os.fsencode(tmp_path / "d" / "a.txt").lstrip(b"/")
    assert {"mode", "uid", "gid", "user", "group", "mtime_ns", "ctime_ns", "ino", "dev"} <= set(f)
    # ancestors of the source come first, as directories
    anc = [i.entry["path"] for i in items[: len(tmp_path.parts) - 1]]
    assert anc[0] == tmp_path.parts[1].encode()


def test_excludes(tmp_path: Path) -> None:
    _tree(tmp_path)
    pats = ("*.tmp", str(tmp_path / "d" / "sub") + "*")
    items = list(walk([str(tmp_path / "d")], WalkOptions(exclude=pats), lambda p, e: None))
    names = {i.abspath.rsplit(b"/", 1)[-1] for i in items}
    assert b"b.tmp" not in names and b"sub" not in names and b"c" not in names
    assert b"a.txt" in names


def test_missing_source_and_unreadable_dir_go_to_on_error(tmp_path: Path) -> None:
    _tree(tmp_path)
    errors: list[bytes] = []
    items = list(walk([str(tmp_path / "nope"), str(tmp_path / "d")], WalkOptions(), lambda p, e: errors.append(p)))
    assert errors == [os.fsencode(tmp_path / "nope")]
    assert any(i.abspath.endswith(b"/a.txt") for i in items)


def test_vanishing_file_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path)
    real = os.lstat

    def flaky(p: bytes, *a: object, **k: object) -> os.stat_result:
        if p.endswith(b"/a.txt"):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        return real(p)

    monkeypatch.setattr("fleetsafe.fsread.os.lstat", flaky)
    errors: list[tuple[bytes, BaseException]] = []
    items = list(walk([str(tmp_path / "d")], WalkOptions(), lambda p, e: errors.append((p, e))))
    assert [p for p, _ in errors] == [os.fsencode(tmp_path / "d" / "a.txt")]
    assert isinstance(errors[0][1], FileNotFoundError)
    assert not any(i.abspath.endswith(b"/a.txt") for i in items)


def test_symlink_source_not_followed(tmp_path: Path) -> None:
    _tree(tmp_path)
    os.symlink(tmp_path / "d", tmp_path / "alias")
    w = Walker(WalkOptions(), lambda p, e: None)
    items = list(w.walk([str(tmp_path / "alias")]))
    assert items[-1].entry["type"] == "symlink"
    assert w.warnings and "is a symlink" in w.warnings[0]
    assert not any(i.abspath.startswith(os.fsencode(tmp_path / "alias") + b"/") for i in items)


def test_normalise_sources_drops_nested() -> None:
    assert normalise_sources(["/etc/ssh", "/etc", "/var//lib/", "/etc-x"]) == [b"/etc", b"/etc-x", b"/var/lib"]


def test_open_for_read_refuses_symlink_and_fifo(tmp_path: Path) -> None:
    _tree(tmp_path)
    with pytest.raises(OSError) as ei:
        open_for_read(os.fsencode(tmp_path / "d" / "link"))
    assert ei.value.errno == errno.ELOOP
    with pytest.raises(OSError):
        open_for_read(os.fsencode(tmp_path / "d" / "fifo"))  # non-blocking: fails fast, never hangs
    fd, st = open_for_read(os.fsencode(tmp_path / "d" / "a.txt"))
    try:
        assert os.read(fd, 10) == b"hello" and st.st_size == 5
    finally:
        os.close(fd)


def test_one_file_system_records_mountpoint_but_not_contents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path)
    real = os.lstat
    mnt = os.fsencode(tmp_path / "d" / "sub")

    def other_dev(p: bytes, *a: object, **k: object) -> os.stat_result:
        st = real(p)
        if p == mnt or p.startswith(mnt + b"/"):
            # pretend d/sub is a mount point of another filesystem
            fields = list(st)
            fields[2] = st.st_dev + 1  # st_dev
            return os.stat_result(fields)
        return st

    monkeypatch.setattr("fleetsafe.fsread.os.lstat", other_dev)
    src = str(tmp_path / "d")
    w = Walker(WalkOptions(one_file_system=True), lambda p, e: None)
    seen = [i.abspath for i in w.walk([src])]
    assert mnt in seen and not any(p.startswith(mnt + b"/") for p in seen)
    assert w.skipped_mounts == [mnt]
    seen_all = [i.abspath for i in walk([src], WalkOptions(one_file_system=False), lambda p, e: None)]
    assert mnt + b"/c" in seen_all


def _xattrs_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.fleetsafe-probe", b"1")
        os.removexattr(path, "user.fleetsafe-probe")
    except OSError:
        return False
    return True


def test_xattrs_recorded_for_files_and_dirs_not_symlinks(tmp_path: Path) -> None:
    _tree(tmp_path)
    if not _xattrs_supported(tmp_path / "d" / "a.txt"):
        pytest.skip("filesystem without user xattrs")
    os.setxattr(tmp_path / "d" / "a.txt", "user.comment", b"\x00binary\xff")
    os.setxattr(tmp_path / "d" / "sub", "user.dir", b"x")
    items = {i.abspath: i.entry for i in walk([str(tmp_path / "d")], WalkOptions(), lambda p, e: None)}
    root = os.fsencode(tmp_path / "d")
    assert items[root + b"/a.txt"]["xattrs"] == {"user.comment": "AGJpbmFyef8="}
    assert items[root + b"/sub"]["xattrs"] == {"user.dir": "eA=="}
    assert "xattrs" not in items[root + b"/link"] and "xattrs" not in items[root + b"/b.tmp"]
    off = {i.abspath: i.entry for i in walk([str(tmp_path / "d")], WalkOptions(xattrs=False), lambda p, e: None)}
    assert "xattrs" not in off[root + b"/a.txt"]
