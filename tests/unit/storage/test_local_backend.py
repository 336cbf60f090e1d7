"""LocalBackend specifics beyond the conformance suite: traversal, symlinks, temp files, disk full."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from fleetsafe.errors import (
    InvalidObjectName,
    InvalidRange,
    ObjectNotFound,
    StorageError,
    StorageFull,
)
from fleetsafe.storage.conformance import INVALID_NAMES
from fleetsafe.storage.local import LocalBackend


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "repo")


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_invalid_names_never_touch_the_filesystem(tmp_path: Path, backend: LocalBackend) -> None:
    (tmp_path / "x").write_bytes(b"outside")  # what "../x" would reach
    before = _tree(tmp_path)
    for bad in INVALID_NAMES:
        with pytest.raises(InvalidObjectName):
            backend.store(bad, b"evil")
        with pytest.raises(InvalidObjectName):
            backend.load(bad)
        with pytest.raises(InvalidObjectName):
            backend.delete(bad)
    assert _tree(tmp_path) == before
    assert (tmp_path / "x").read_bytes() == b"outside"


def test_symlinked_object_is_not_followed(tmp_path: Path, backend: LocalBackend) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"not repository data")
    (backend.root / "keys").mkdir()
    os.symlink(secret, backend.root / "keys" / "evil")
    with pytest.raises(ObjectNotFound):
        backend.load("keys/evil")
    with pytest.raises(ObjectNotFound):
        backend.info("keys/evil")
    assert backend.list("keys/") == []


def test_directory_is_not_an_object(backend: LocalBackend) -> None:
    backend.store("packs/ab/cd", b"x")
    for call in (lambda: backend.load("packs/ab"), lambda: backend.info("packs/ab")):
        with pytest.raises(ObjectNotFound):
            call()
    with pytest.raises(ObjectNotFound):
        backend.load("packs/ab/cd/ef")  # through a file: ENOTDIR


def test_store_through_a_file_is_a_permanent_error(backend: LocalBackend) -> None:
    backend.store("a", b"file")
    with pytest.raises(StorageError) as exc:
        backend.store("a/b", b"x")
    assert not isinstance(exc.value, ObjectNotFound)


def test_temp_files_are_invisible_and_cleaned(backend: LocalBackend) -> None:
    backend.store("d/obj", b"1")
    (backend.root / "d" / ".tmp-obj-leftover").write_bytes(b"crash leftover")
    assert [o.name for o in backend.list("")] == ["d/obj"]
    assert [p.name for p in (backend.root / "d").iterdir() if p.name.startswith(".tmp-obj-") and p.name != ".tmp-obj-leftover"] == []


def test_disk_full_is_storage_full_and_leaves_nothing(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    def enospc(fd: int, data: bytes) -> int:  # fault injection: the disk fills up mid-write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", enospc)
    with pytest.raises(StorageFull):
        backend.store("packs/aa/bb", b"x" * 1000)
    monkeypatch.undo()
    assert list((backend.root / "packs" / "aa").iterdir()) == []  # temp file removed
    assert not backend.exists("packs/aa/bb")


def test_negative_range(backend: LocalBackend) -> None:
    backend.store("o", b"abc")
    with pytest.raises(InvalidRange):
        backend.load("o", -1)


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError):
        LocalBackend(tmp_path / "file")
    with pytest.raises(StorageError):
        LocalBackend(tmp_path / "missing", create=False)


def test_objects_are_private(backend: LocalBackend) -> None:
    backend.store("keys/k", b"slot")
    assert (backend.root / "keys" / "k").stat().st_mode & 0o077 == 0
