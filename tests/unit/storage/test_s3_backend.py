"""S3Backend against real SeaweedFS over HTTPS: TLS refusal, credentials, errors, pagination."""

from __future__ import annotations

import socket
import traceback
from typing import Any

import pytest
from fleetsafe.errors import (
    BackendConnectionError,
    ConfigError,
    ObjectNotFound,
    StorageError,
    UntrustedTarget,
)
from fleetsafe.storage.s3 import S3Backend
from fleetsafe.storage.wrappers import RetryingBackend

pytestmark = pytest.mark.services


def _backend(s: dict[str, Any], who: str = "agent", **over: Any) -> S3Backend:
    args: dict[str, Any] = {
        "bucket": s["bucket"], "prefix": "t-s3", "access_key": s[who]["access_key"],
        "secret_key": s[who]["secret_key"], "ca_file": s["ca"], "connect_timeout": 3, "read_timeout": 10,
    }  # fmt: skip
    args.update(over)
    endpoint = args.pop("endpoint", s["endpoint"])
    return S3Backend(endpoint, **args)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_plain_http_is_refused(s3_server: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="ENC-TRANSIT"):
        _backend(s3_server, endpoint=s3_server["endpoint_plain"])


def test_untrusted_ca_is_refused_and_not_retried(s3_server: dict[str, Any]) -> None:
    sleeps: list[float] = []
    backend = RetryingBackend(_backend(s3_server, ca_file=s3_server["other_ca"]), attempts=3, sleep=sleeps.append)
    with pytest.raises(UntrustedTarget, match="CERTIFICATE_VERIFY_FAILED"):
        backend.store("x", b"x")
    assert sleeps == []


def test_system_cas_do_not_trust_a_private_ca(s3_server: dict[str, Any]) -> None:
    with pytest.raises(UntrustedTarget, match="system CAs"):
        _backend(s3_server, ca_file=None).info("x")


def test_target_down_is_a_connection_error(s3_server: dict[str, Any]) -> None:
    sleeps: list[float] = []
    down = _backend(s3_server, endpoint=f"https://127.0.0.1:{_free_port()}")
    with pytest.raises(BackendConnectionError):
        RetryingBackend(down, attempts=2, sleep=sleeps.append).load("x")
    assert len(sleeps) == 1


def test_wrong_secret_is_permanent_and_secret_free(s3_server: dict[str, Any]) -> None:
    bad = _backend(s3_server, secret_key="wrong-secret-never-printed")
    with pytest.raises(StorageError) as exc:
        bad.store("x", b"x")
    assert not isinstance(exc.value, BackendConnectionError)
    text = "".join(traceback.format_exception(exc.value))
    assert "wrong-secret-never-printed" not in text


def test_secrets_not_in_repr(s3_backend: S3Backend, s3_server: dict[str, Any]) -> None:
    secret = s3_server["agent"]["secret_key"]
    for text in (repr(s3_backend), str(s3_backend.location), repr(vars(s3_backend))):
        assert secret not in text


def test_write_only_identity_cannot_read(s3_server: dict[str, Any]) -> None:
    wo = _backend(s3_server, who="writeonly", prefix="t-wo")
    wo.store("packs/x", b"sealed")  # Write:backups allows put
    with pytest.raises(StorageError, match="access denied"):
        wo.load("packs/x")


def test_missing_bucket(s3_server: dict[str, Any]) -> None:
    # (SeaweedFS creates a bucket on an admin's PUT, so read.)
    with pytest.raises(StorageError, match="does not exist"):
        _backend(s3_server, who="admin", bucket="no-such-bucket").load("x")


def test_list_paginates(s3_server: dict[str, Any]) -> None:
    backend = _backend(s3_server, prefix="t-pages", list_page_size=2)
    names = [f"snapshots/{i:02d}" for i in range(7)]
    for n in reversed(names):
        backend.store(n, n.encode())
    assert [o.name for o in backend.list("snapshots/")] == names
    assert [o.size for o in backend.list("snapshots/0")] == [12] * 7


def test_prefixes_isolate_repositories(s3_server: dict[str, Any]) -> None:
    a, b = _backend(s3_server, prefix="t-iso/a"), _backend(s3_server, prefix="t-iso/ab")
    a.store("config", b"A")
    b.store("config", b"B")
    assert [o.name for o in a.list("")] == ["config"]
    assert a.load("config") == b"A"
    with pytest.raises(ObjectNotFound):
        a.delete("packs/none")


def test_bad_endpoints(s3_server: dict[str, Any]) -> None:
    for endpoint in ("https://127.0.0.1:18443/bucket", "ftp://x", "https://user@127.0.0.1"):
        with pytest.raises(ConfigError):
            _backend(s3_server, endpoint=endpoint)
    with pytest.raises(ConfigError):
        _backend(s3_server, ca_file="/nonexistent/ca.pem")


def test_bytes_damaged_in_transit_are_rejected(s3_backend: S3Backend) -> None:
    # Fault injection on the wire: flip one byte after Content-MD5 was computed.
    def corrupt(request: Any, **kwargs: Any) -> None:
        raw = request.body.read() if hasattr(request.body, "read") else request.body
        body = bytearray(raw)
        body[0] ^= 0xFF
        request.body = bytes(body)

    s3_backend._s3().meta.events.register("before-send.s3.PutObject", corrupt)
    with pytest.raises(StorageError, match="BadDigest"):
        s3_backend.store("packs/p", b"pack bytes")
    s3_backend._s3().meta.events.unregister("before-send.s3.PutObject", corrupt)
    with pytest.raises(ObjectNotFound):
        s3_backend.info("packs/p")
