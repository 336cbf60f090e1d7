"""open_backend(): agent.yml target entries -> backends, and every malformed entry -> ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fleetsafe.errors import ConfigError
from fleetsafe.storage.local import LocalBackend
from fleetsafe.storage.s3 import S3Backend
from fleetsafe.storage.sftp import SFTPBackend
from fleetsafe.storage.url import open_backend
from fleetsafe.storage.wrappers import RetryingBackend


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "id_ed25519"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    key.chmod(0o600)
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    creds = tmp_path / "creds.yml"
    creds.write_text("access_key: AKX\nsecret_key: topsecret-value\n")
    creds.chmod(0o600)
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    return {"key": str(key), "known_hosts": str(kh), "creds": str(creds), "ca": str(ca), "dir": str(tmp_path)}


def test_local_paths(files: dict[str, str]) -> None:
    for url in (f"{files['dir']}/repo", f"file://{files['dir']}/repo2", f"file://localhost{files['dir']}/r3"):
        backend = open_backend({"name": "onsite", "url": url})
        assert isinstance(backend, LocalBackend)  # never wrapped: local errors are not transient


def test_sftp(files: dict[str, str]) -> None:
    b = open_backend({"name": "off", "url": "sftp://backup@sftp.example:2222/upload/web1",
                      "key_file": files["key"], "known_hosts": files["known_hosts"], "attempts": 2})  # fmt: skip
    assert isinstance(b, RetryingBackend) and b.attempts == 2
    inner = b.inner
    assert isinstance(inner, SFTPBackend)
    assert (inner.host, inner.port, inner.user, inner.root) == ("sftp.example", 2222, "backup", "/upload/web1")
    default_port = open_backend({"url": "sftp://u@h/p", "key_file": files["key"], "known_hosts": files["known_hosts"]}, retry=False)
    assert isinstance(default_port, SFTPBackend) and default_port.port == 22


def test_s3(files: dict[str, str]) -> None:
    b = open_backend({"name": "cloud", "url": "s3://s3.example:8443/backups/hosts/web1",
                      "credentials_file": files["creds"], "ca_file": files["ca"]}, retry=False)  # fmt: skip
    assert isinstance(b, S3Backend)
    assert (b.endpoint, b.bucket, b.prefix, b.region) == ("https://s3.example:8443", "backups", "hosts/web1", "us-east-1")
    assert "topsecret" not in repr(b) and "topsecret" not in repr(vars(b))
    inline = open_backend({"url": "s3://h/bkt", "access_key": "a", "secret_key": "s", "region": "eu-west-1"}, retry=False)
    assert isinstance(inline, S3Backend) and inline.endpoint == "https://h:443" and inline.region == "eu-west-1"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"url": "relative/path"}, "unsupported url"),
    ({"url": "file://otherhost/x"}, "local path"),
    ({"url": "/"}, "absolute path below"),
    ({"url": "/srv/../etc"}, "'..'"),
    ({"name": "x"}, "missing url"),
    ({"url": "http://h:18333/b"}, "always TLS"),
    ({"url": "https://h/b"}, "always TLS"),
    ({"url": "ftp://h/b"}, "always TLS"),
    ({"url": "gopher://h/b"}, "unsupported url"),
    ({"url": "/srv/x", "key_file": "k"}, "unknown option"),
    ({"url": "sftp://h/p", "KEY": "k"}, "unknown option"),
    ({"url": "sftp://u:pw@h/p"}, "passwords are never accepted"),
    ({"url": "sftp://h/p", "key_file": "{key}", "known_hosts": "{known_hosts}"}, "needs a user"),
    ({"url": "sftp://u@h/p", "known_hosts": "{known_hosts}"}, "need key_file"),
    ({"url": "sftp://u@h/p", "key_file": "{key}"}, "need known_hosts"),
    ({"url": "sftp://u@h:99999/p", "key_file": "{key}", "known_hosts": "{known_hosts}"}, "port"),
    ({"url": "sftp://u@h", "key_file": "{key}", "known_hosts": "{known_hosts}"}, "absolute path"),
    ({"url": "sftp://u@h/p", "key_file": "{dir}/missing", "known_hosts": "{known_hosts}"}, "ssh key file"),
    ({"url": "sftp://u@h/p", "key_file": "{key}", "known_hosts": "{dir}/missing"}, "known_hosts"),
    ({"url": "sftp://u@h/p", "key_file": "{key}", "known_hosts": "{known_hosts}", "timeout": "x"}, "positive number"),
    ({"url": "s3://h/Bad_Bucket", "credentials_file": "{creds}"}, "bucket name"),
    ({"url": "s3://h", "credentials_file": "{creds}"}, "bucket name"),
    ({"url": "s3://h/bkt/../x", "credentials_file": "{creds}"}, "prefix"),
    ({"url": "s3://ak:sk@h/bkt", "credentials_file": "{creds}"}, "never go in the url"),
    ({"url": "s3://h/bkt"}, "need credentials_file"),
    ({"url": "s3://h/bkt", "access_key": "a"}, "both be non-empty"),
    ({"url": "s3://h/bkt", "access_key": "a", "secret_key": "s", "credentials_file": "{creds}"}, "not both"),
    ({"url": "s3://h/bkt", "credentials_file": "{dir}/nope.yml"}, "credentials_file"),
    ({"url": "s3://h/bkt", "credentials_file": "{creds}", "ca_file": "{dir}/nope.pem"}, "ca_file"),
    ({"url": "s3://h/bkt", "credentials_file": "{creds}", "attempts": 0}, "positive"),
    ({"url": "s3://h/bkt", "credentials_file": "{creds}", "attempts": 1.5}, "integer"),
    ({"url": "s3://h/bkt?x=1", "credentials_file": "{creds}"}, "query"),
]


@pytest.mark.parametrize(("target", "message"), BAD)
def test_malformed_targets(files: dict[str, str], target: dict[str, Any], message: str) -> None:
    target = {k: v.format(**files) if isinstance(v, str) else v for k, v in target.items()}
    target.setdefault("name", "t1")
    with pytest.raises(ConfigError, match=message) as exc:
        open_backend(target)
    assert "topsecret" not in str(exc.value)


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError):
        open_backend(["url"])  # type: ignore[arg-type]


def test_world_readable_credentials_file_is_refused(files: dict[str, str]) -> None:
    Path(files["creds"]).chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 0600"):
        open_backend({"name": "c", "url": "s3://h/bkt", "credentials_file": files["creds"]})


def test_broken_credentials_file_does_not_echo_it(files: dict[str, str]) -> None:
    Path(files["creds"]).write_text("access_key: [topsecret\n")
    with pytest.raises(ConfigError) as exc:
        open_backend({"name": "c", "url": "s3://h/bkt", "credentials_file": files["creds"]})
    assert "topsecret" not in str(exc.value)
