"""SFTPBackend against the real chrooted sshd: host key pinning, auth, outages, traversal."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from fleetsafe.errors import (
    BackendConnectionError,
    ConfigError,
    InvalidObjectName,
    ObjectNotFound,
    StorageError,
    StorageFull,
    UntrustedTarget,
)
from fleetsafe.storage.conformance import INVALID_NAMES
from fleetsafe.storage.sftp import SFTPBackend
from fleetsafe.storage.wrappers import FaultyBackend, RetryingBackend

pytestmark = pytest.mark.services


def _backend(s: dict[str, Any], **over: Any) -> SFTPBackend:
    args: dict[str, Any] = {
        "port": s["port"], "user": s["user"], "root": "/upload/pin", "key_file": s["key"],
        "known_hosts": s["known_hosts"], "timeout": 5.0,
    }  # fmt: skip
    args.update(over)
    return SFTPBackend(s["host"], **args)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _no_sleep_retry(backend: SFTPBackend) -> tuple[RetryingBackend, list[float]]:
    sleeps: list[float] = []
    return RetryingBackend(backend, attempts=3, backoff=0.01, sleep=sleeps.append), sleeps


def test_wrong_host_key_is_refused_and_not_retried(sftp_server: dict[str, Any]) -> None:
    retrying, sleeps = _no_sleep_retry(_backend(sftp_server, known_hosts=sftp_server["wrong_known_hosts"]))
    with pytest.raises(UntrustedTarget, match="differs from the one pinned"):
        retrying.list("")
    assert sleeps == []  # an impostor does not go away by asking again


def test_unknown_host_is_refused(sftp_server: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(UntrustedTarget, match="not pinned"):
        _backend(sftp_server, known_hosts=str(empty)).store("x", b"x")


def test_host_key_pinned_for_the_right_port(sftp_server: dict[str, Any], tmp_path: Path) -> None:
    # The right key, but listed for port 22: ssh semantics say that is another host.
    kh = tmp_path / "known_hosts"
    kh.write_text(" ".join([sftp_server["host"], *Path(sftp_server["hostkey_pub"]).read_text().split()[:2]]) + "\n")
    with pytest.raises(UntrustedTarget):
        _backend(sftp_server, known_hosts=str(kh)).list("")


def test_missing_known_hosts_is_a_config_error(sftp_server: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pinned"):
        _backend(sftp_server, known_hosts=str(tmp_path / "nope"))


def test_key_readable_by_everyone_is_refused(sftp_server: dict[str, Any], tmp_path: Path) -> None:
    key = tmp_path / "key"
    shutil.copy(sftp_server["key"], key)
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 0600"):
        _backend(sftp_server, key_file=str(key))


def test_not_a_key_is_a_config_error(sftp_server: dict[str, Any], tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("not a key\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="cannot load private key"):
        _backend(sftp_server, key_file=str(key))


def test_unauthorised_key_is_permanent(sftp_server: dict[str, Any]) -> None:
    retrying, sleeps = _no_sleep_retry(_backend(sftp_server, key_file=sftp_server["stranger_key"]))
    with pytest.raises(StorageError, match="authentication") as exc:
        retrying.list("")
    assert not isinstance(exc.value, BackendConnectionError)
    assert sleeps == []


def test_target_down_is_a_connection_error(sftp_server: dict[str, Any]) -> None:
    retrying, sleeps = _no_sleep_retry(_backend(sftp_server, port=_free_port()))
    with pytest.raises(BackendConnectionError):
        retrying.store("x", b"x")
    assert len(sleeps) == 2  # 3 attempts


def test_reconnects_after_the_connection_drops(sftp_backend: SFTPBackend) -> None:
    faulty = FaultyBackend(sftp_backend)
    retrying = RetryingBackend(faulty, attempts=3, backoff=0.01, sleep=lambda s: None)
    retrying.store("a/b", b"before")
    transport = sftp_backend._client.get_transport()  # type: ignore[union-attr]
    transport.close()  # the link dies under us
    assert retrying.load("a/b") == b"before"
    assert faulty.reconnects == 1


def test_dead_link_without_retry_is_a_connection_error(sftp_backend: SFTPBackend) -> None:
    sftp_backend.store("a", b"x")
    sftp_backend._client.get_transport().close()  # type: ignore[union-attr]
    with pytest.raises(BackendConnectionError):
        sftp_backend.load("a")
    assert sftp_backend.load("a") == b"x"  # the next call reconnects by itself


def test_invalid_names_never_leave_the_root(sftp_server: dict[str, Any], sftp_backend: SFTPBackend) -> None:
    chroot: Path = sftp_server["chroot"]
    sftp_backend.store("inside", b"ok")
    before = {str(p) for p in chroot.rglob("*")}
    for bad in INVALID_NAMES:
        with pytest.raises(InvalidObjectName):
            sftp_backend.store(bad, b"evil")
        with pytest.raises(InvalidObjectName):
            sftp_backend.load(bad)
    assert {str(p) for p in chroot.rglob("*")} == before


def test_write_outside_the_writable_area_is_permanent(sftp_server: dict[str, Any]) -> None:
    backend = _backend(sftp_server, root="/forbidden")  # chroot "/" is root-owned
    with pytest.raises(StorageError) as exc:
        backend.store("x", b"x")
    assert not isinstance(exc.value, (BackendConnectionError, ObjectNotFound))


def test_files_land_in_the_chroot_atomically(sftp_server: dict[str, Any], sftp_backend: SFTPBackend) -> None:
    sftp_backend.store("packs/ab/obj", b"data")
    on_disk = sftp_server["chroot"] / sftp_backend.root.lstrip("/") / "packs" / "ab"
    assert sorted(os.listdir(on_disk)) == ["obj"]  # no temp file left behind
    assert (on_disk / "obj").read_bytes() == b"data"


def test_missing_and_not_regular(sftp_backend: SFTPBackend) -> None:
    sftp_backend.store("d/x", b"1")
    for call in (lambda: sftp_backend.load("d"), lambda: sftp_backend.info("d"), lambda: sftp_backend.load("nope")):
        with pytest.raises(ObjectNotFound):
            call()
    assert sftp_backend.list("zzz") == []  # root has no such dir: empty, not an error


def test_repr_and_location(sftp_backend: SFTPBackend) -> None:
    assert sftp_backend.location.startswith("sftp://backup@127.0.0.1:2222/upload/")
    assert repr(sftp_backend) == f"SFTPBackend({sftp_backend.location})"


@pytest.fixture
def full_dir(sftp_server: dict[str, Any]) -> Any:
    """A 1 MiB tmpfs inside the chroot, owned by the sftp user: a real full disk."""
    import subprocess

    d = sftp_server["chroot"] / "upload" / f"full-{os.getpid()}"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,uid=34,gid=34,mode=0700", "tmpfs", str(d)],
                       check=False, capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        d.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", str(d)], check=True)
    d.rmdir()


def test_disk_full_is_storage_full_never_a_truncated_object(
    sftp_server: dict[str, Any], full_dir: Path
) -> None:
    # paramiko drops the error replies of pipelined writes on close(); without
    # our drain + size check this store "succeeded" with a 1 MiB object.
    backend = _backend(sftp_server, root=f"/upload/{full_dir.name}")
    with pytest.raises(StorageFull, match="no space"):
        backend.store("packs/big", os.urandom(2 << 20))
    assert list(full_dir.rglob("*")) == [full_dir / "packs"]  # no object, no temp file
    backend.store("packs/small", b"fits")  # the connection is still usable
    assert backend.load("packs/small") == b"fits"


def test_known_hosts_markers_are_refused(sftp_server: dict[str, Any], tmp_path: Path) -> None:
    # paramiko would ignore "@revoked" and trust the plain line below it.
    kh = tmp_path / "known_hosts"
    pinned = Path(sftp_server["known_hosts"]).read_text()
    kh.write_text("@revoked " + pinned + pinned)
    with pytest.raises(ConfigError, match="@revoked"):
        _backend(sftp_server, known_hosts=str(kh))
