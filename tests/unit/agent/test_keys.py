"""Key files, fingerprints and key slots (DESIGN "Keys", ENC-REST)."""

from __future__ import annotations

import logging
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fleetsafe import crypto, keys
from fleetsafe.errors import (
    AuthenticationFailed,
    FormatError,
    KeyFileError,
    UnsupportedVersion,
)

MK = bytes(range(32))
REPO = bytes(16)


def test_host_key_file_created_0600_and_never_overwritten(tmp_path):
    path = tmp_path / "repo.key"
    key = keys.create_host_key(path)
    assert len(key) == 32
    assert (path.stat().st_mode & 0o777) == 0o600
    assert keys.load_host_key(path) == key
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keys.create_host_key(path)
    assert keys.load_host_key(path) == key


def test_host_key_refuses_symlinks(tmp_path):
    target = tmp_path / "elsewhere"
    link = tmp_path / "repo.key"
    link.symlink_to(target)
    with pytest.raises(KeyFileError):
        keys.create_host_key(link)
    assert not target.exists()  # nothing was written through the link
    keys.create_host_key(target)
    with pytest.raises(KeyFileError):
        keys.load_host_key(link)


def test_loose_mode_warns_or_refuses(tmp_path, caplog):
    path = tmp_path / "repo.key"
    keys.create_host_key(path)
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        keys.load_host_key(path)
    assert "0644" in caplog.text
    with pytest.raises(KeyFileError):
        keys.load_host_key(path, strict=True)


def test_bad_host_key_files(tmp_path):
    p = tmp_path / "k"
    p.write_bytes(b"not base64!!\n")
    os.chmod(p, 0o600)
    with pytest.raises(KeyFileError):
        keys.load_host_key(p)
    p.write_bytes(b"AAAA\n")
    with pytest.raises(KeyFileError):
        keys.load_host_key(p)
    with pytest.raises(KeyFileError):
        keys.load_host_key(tmp_path / "missing")


def test_recovery_keypair(tmp_path):
    priv, pub = tmp_path / "rec.pem", tmp_path / "rec.pub"
    fp = keys.create_recovery_keypair(priv, pub, b"correct horse")
    assert (priv.stat().st_mode & 0o777) == 0o600
    assert b"ENCRYPTED" in priv.read_bytes()
    raw = keys.load_recovery_public(pub)
    key = keys.load_recovery_private(priv, b"correct horse")
    assert crypto.x25519_public_bytes(key) == raw
    assert keys.recovery_fingerprint(raw) == fp == keys.recovery_fingerprint(key)
    with pytest.raises(KeyFileError):
        keys.load_recovery_private(priv, b"wrong")
    with pytest.raises(KeyFileError):
        keys.create_recovery_keypair(priv, pub, b"x")
    with pytest.raises(KeyFileError):
        keys.create_recovery_keypair(tmp_path / "a", tmp_path / "b", b"")


def test_fingerprints_domain_separated():
    k = os.urandom(32)
    fp = keys.host_fingerprint(k)
    assert len(fp) == 32 and int(fp, 16) >= 0
    assert k.hex()[:32] != fp
    assert keys.fingerprint(keys.SLOT_TYPE_HOST, k) != keys.fingerprint(keys.SLOT_TYPE_RECOVERY, k)


def test_host_slot_roundtrip_and_wrong_key():
    hk = os.urandom(32)
    fp, data = keys.make_host_slot(MK, hk, REPO, created=1_700_000_000)
    slot = keys.parse_slot(data)
    assert slot.fingerprint == fp and slot.type_name == "host" and slot.created == 1_700_000_000
    assert keys.open_slot(slot, host_key=hk) == MK
    with pytest.raises(AuthenticationFailed):
        keys.open_slot(slot, host_key=os.urandom(32))
    with pytest.raises(AuthenticationFailed):
        keys.open_slot(slot)
    assert slot.describe()["created"] == "2023-11-14T22:13:20Z"


def test_recovery_slot_roundtrip():
    priv = X25519PrivateKey.generate()
    fp, data = keys.make_recovery_slot(MK, crypto.x25519_public_bytes(priv), REPO)
    slot = keys.parse_slot(data)
    assert slot.type_name == "recovery" and slot.fingerprint == fp
    assert keys.open_slot(slot, recovery_private=priv) == MK
    with pytest.raises(AuthenticationFailed):
        keys.open_slot(slot, recovery_private=X25519PrivateKey.generate())


@pytest.mark.parametrize("pos", [0, 4, 5, 6, 7, 8, 16, 32, 48, 79, 80, 100, -1])
def test_slot_strict_parsing_and_header_authenticated(pos):
    hk = os.urandom(32)
    _, data = keys.make_host_slot(MK, hk, REPO)
    bad = bytearray(data)
    bad[pos] ^= 0x01
    with pytest.raises((FormatError, AuthenticationFailed)):
        keys.open_slot(keys.parse_slot(bytes(bad)), host_key=hk)


def test_slot_version_and_length():
    _, data = keys.make_host_slot(MK, os.urandom(32), REPO)
    bad = bytearray(data)
    bad[4] = 9
    with pytest.raises(UnsupportedVersion):
        keys.parse_slot(bytes(bad))
    with pytest.raises(FormatError):
        keys.parse_slot(data + b"x")
    with pytest.raises(FormatError):
        keys.parse_slot(data[:10])


def test_parse_recovery_public_forms():
    priv = X25519PrivateKey.generate()
    raw = crypto.x25519_public_bytes(priv)
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = priv.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert keys.parse_recovery_public(raw) == raw == keys.parse_recovery_public(pem)
    with pytest.raises(FormatError):
        keys.parse_recovery_public(b"garbage")
