"""Crypto envelope, compression, packs and sealed objects (ENC-REST, ENC-TEST)."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fleetsafe import compress, crypto
from fleetsafe.errors import (
    AuthenticationFailed,
    FormatError,
    IntegrityError,
    UnsupportedVersion,
)
from fleetsafe.repo import objects
from fleetsafe.repo.pack import (
    BLOB_DATA,
    BLOB_TREE,
    HEADER,
    PackWriter,
    decrypt_blob,
    read_trailer,
)
from hypothesis import given, settings
from hypothesis import strategies as st

MK = bytes(range(32))


def test_subkeys_distinct_and_deterministic():
    a = crypto.derive_subkeys(MK)
    b = crypto.derive_subkeys(MK)
    assert a == b
    vals = [a.id_key, a.chunker_key, a.kek, a.config_mac_key]
    assert len(set(vals)) == 4 and MK not in vals
    assert "secret" in repr(a) and a.kek.hex() not in repr(a)
    with pytest.raises(FormatError):
        crypto.derive_subkeys(b"short")


def test_nonce_layout_and_bounds():
    assert crypto.nonce(0, 1) == bytes(11) + b"\x01"
    assert crypto.nonce(1, 0) == b"\0\0\0\x01" + bytes(8)
    with pytest.raises(ValueError):
        crypto.nonce(0, 2**64)
    with pytest.raises(ValueError):
        crypto.nonce(-1, 0)


def test_seal_open_and_tamper():
    key = os.urandom(32)
    n = crypto.nonce(0, 7)
    ct = crypto.seal(key, n, b"hello", b"aad")
    assert crypto.open_(key, n, ct, b"aad", "x") == b"hello"
    for bad in (ct[:-1] + bytes([ct[-1] ^ 1]), bytes([ct[0] ^ 1]) + ct[1:]):
        with pytest.raises(AuthenticationFailed):
            crypto.open_(key, n, bad, b"aad", "x")
    with pytest.raises(AuthenticationFailed):
        crypto.open_(key, n, ct, b"other aad", "x")
    with pytest.raises(AuthenticationFailed):
        crypto.open_(key, crypto.nonce(0, 8), ct, b"aad", "x")
    with pytest.raises(FormatError):
        crypto.open_(key, n, b"short", b"aad", "x")


def test_key_wrap():
    kek, dk = os.urandom(32), os.urandom(32)
    w = crypto.wrap_key(kek, dk)
    assert len(w) == crypto.WRAPPED_KEY_SIZE
    assert crypto.unwrap_key(kek, w, "x") == dk
    with pytest.raises(AuthenticationFailed):
        crypto.unwrap_key(os.urandom(32), w, "x")
    with pytest.raises(FormatError):
        crypto.unwrap_key(kek, w[:-1], "x")


def test_x25519_wrap_roundtrip():
    priv = X25519PrivateKey.generate()
    pub = crypto.x25519_public_bytes(priv)
    salt = os.urandom(32)
    eph_pub, k1 = crypto.x25519_wrap(pub, salt)
    assert crypto.x25519_unwrap(priv, eph_pub, salt) == k1
    assert crypto.x25519_unwrap(X25519PrivateKey.generate(), eph_pub, salt) != k1


def test_blob_id_keyed():
    assert crypto.blob_id(MK, b"x") != crypto.blob_id(bytes(32), b"x")
    assert len(crypto.blob_id(MK, b"")) == 32


def test_mac():
    tag = crypto.mac(MK, b"data")
    crypto.verify_mac(MK, b"data", tag, "x")
    with pytest.raises(AuthenticationFailed):
        crypto.verify_mac(MK, b"datA", tag, "x")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=5000) | st.text(max_size=2000).map(str.encode))
def test_compress_roundtrip(data):
    comp, payload = compress.compress(data)
    assert comp in compress.ALGORITHMS
    assert len(payload) <= len(data)
    assert compress.decompress(comp, payload, len(data)) == data


def test_compress_only_when_smaller_and_strict():
    comp, payload = compress.compress(os.urandom(1000))
    assert comp == compress.COMP_NONE
    comp, payload = compress.compress(b"a" * 1000)
    assert comp == compress.COMP_ZSTD and len(payload) < 100
    with pytest.raises(FormatError):
        compress.decompress(comp, payload, 999)  # a length lie is caught (bomb guard)
    with pytest.raises(FormatError):
        compress.decompress(9, payload, 1000)
    with pytest.raises(FormatError):
        compress.decompress(compress.COMP_ZSTD, b"garbage", 10)


# --- packs -----------------------------------------------------------------------------
def _pack(kek, id_key, blobs):
    w = PackWriter(kek, random=os.urandom)
    for data, btype in blobs:
        comp, payload = compress.compress(data)
        w.add(crypto.blob_id(id_key, data), btype, comp, payload, len(data))
    return w.finish()


def test_pack_roundtrip_and_trailer():
    kek, id_key = os.urandom(32), os.urandom(32)
    blobs = [(b"a" * 5000, BLOB_DATA), (os.urandom(300), BLOB_TREE), (b"", BLOB_DATA)]
    data = _pack(kek, id_key, blobs)
    assert data[:4] == b"FSPK" and data[-4:] == b"FSPE"
    dk, entries = read_trailer(data, kek, "p")
    assert [e.n for e in entries] == [0, 1, 2] and entries[0].offset == HEADER.size
    for (plain, btype), e in zip(blobs, entries):
        assert e.blob_type == btype
        assert decrypt_blob(dk, e, data[e.offset:e.offset + e.length], id_key, "b") == plain


def test_pack_every_byte_matters():
    """Every single-byte change is detected by trailer or blob authentication."""
    kek, id_key = os.urandom(32), os.urandom(32)
    data = _pack(kek, id_key, [(b"x" * 100, BLOB_DATA), (b"y" * 50, BLOB_TREE)])
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(IntegrityError):
            dk, entries = read_trailer(bytes(bad), kek, "p")
            for e in entries:
                decrypt_blob(dk, e, bytes(bad[e.offset:e.offset + e.length]), id_key, "b")


def test_pack_wrong_kek_and_version():
    kek = os.urandom(32)
    data = _pack(kek, os.urandom(32), [(b"x", BLOB_DATA)])
    with pytest.raises(AuthenticationFailed):
        read_trailer(data, os.urandom(32), "p")
    bad = bytearray(data)
    bad[4] = 2
    with pytest.raises(UnsupportedVersion):
        read_trailer(bytes(bad), kek, "p")
    with pytest.raises(FormatError):
        read_trailer(b"NOPE" + data[4:], kek, "p")


def test_blob_aad_binds_id_type_and_compression():
    kek, id_key = os.urandom(32), os.urandom(32)
    data = _pack(kek, id_key, [(b"z" * 1000, BLOB_DATA)])
    dk, (e,) = read_trailer(data, kek, "p")
    ct = data[e.offset:e.offset + e.length]
    from dataclasses import replace

    for forged in (replace(e, blob_type=BLOB_TREE), replace(e, comp=0), replace(e, blob_id=bytes(32)),
                   replace(e, n=1)):
        with pytest.raises(AuthenticationFailed):
            decrypt_blob(dk, forged, ct, id_key, "b")
    with pytest.raises(IntegrityError):  # authentic bytes, but not what the id key says
        decrypt_blob(dk, e, ct, os.urandom(32), "b")


# --- sealed objects ------------------------------------------------------------------------
def test_object_roundtrip_and_type_binding():
    kek = os.urandom(32)
    payload = objects.canonical_json({"b": 1, "a": [1, 2]})
    assert payload == b'{"a":[1,2],"b":1}'
    data = objects.seal_object(objects.OBJ_SNAPSHOT, payload, kek, random=os.urandom)
    assert objects.open_json(data, objects.OBJ_SNAPSHOT, kek, "s") == {"a": [1, 2], "b": 1}
    with pytest.raises(FormatError):
        objects.open_object(data, objects.OBJ_INDEX, kek, "s")
    bad = bytearray(data)
    bad[5] = objects.OBJ_INDEX  # relabel: the header is authenticated
    with pytest.raises(AuthenticationFailed):
        objects.open_object(bytes(bad), objects.OBJ_INDEX, kek, "s")
    with pytest.raises(AuthenticationFailed):
        objects.open_object(data, objects.OBJ_SNAPSHOT, os.urandom(32), "s")
