"""Cryptographic primitives of format v1, all from ``cryptography`` (ENC-REST).

Contract: pure functions, no I/O, no global state.  Every function that needs
randomness takes it as an argument (or a ``random`` callable defaulting to
``os.urandom``) so the known-answer vectors in ``tests/vectors`` can inject
fixed values.  Failures of authentication raise ``AuthenticationFailed``
naming what failed; nothing here returns unauthenticated plaintext.

One key per purpose (docs/format.md, "Keys"): from the 32-byte repository
master key ``MK``::

    id_key      = HKDF-SHA256(MK, salt=None, info="fleetsafe v1 chunk-id")     32 bytes
    chunker_key = HKDF-SHA256(MK, salt=None, info="fleetsafe v1 chunker")      32 bytes
    kek         = HKDF-SHA256(MK, salt=None, info="fleetsafe v1 object-wrap")  32 bytes
    config_mac  = HKDF-SHA256(MK, salt=None, info="fleetsafe v1 config-mac")   32 bytes

Labels are never reused for another purpose; a new purpose gets a new label.

AES-256-GCM nonces are 96 bits: ``domain (4 bytes, big-endian) || counter
(8 bytes, big-endian)``.  Every GCM key in the format is a fresh random data
key (one per pack or per object) or a single-use derived key, and within one
key each ``(domain, counter)`` is used once, so a nonce never repeats under a
key (docs/format.md, "Nonces").
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fleetsafe.errors import AuthenticationFailed, FormatError

KEY_SIZE = 32  # AES-256, HKDF outputs, MK, DK
TAG_SIZE = 16  # AES-GCM tag
NONCE_SIZE = 12  # AES-GCM nonce
WRAPPED_KEY_SIZE = KEY_SIZE + 8  # RFC 3394 output for a 32-byte key
ID_SIZE = 32  # blob ids: keyed BLAKE2b-256
X25519_SIZE = 32

# --- HKDF labels (never reused) --------------------------------------------------
INFO_CHUNK_ID = b"fleetsafe v1 chunk-id"
INFO_CHUNKER = b"fleetsafe v1 chunker"
INFO_OBJECT_WRAP = b"fleetsafe v1 object-wrap"
INFO_CONFIG_MAC = b"fleetsafe v1 config-mac"
INFO_HOST_SLOT = b"fleetsafe v1 host-slot"
INFO_RECOVERY_SLOT = b"fleetsafe v1 recovery-slot"

# --- nonce domains (first 4 bytes of every GCM nonce) ------------------------------
NONCE_DOMAIN_BLOB = 0  # blob i of a pack: counter = i
NONCE_DOMAIN_TRAILER = 1  # the pack trailer: counter = 0
NONCE_DOMAIN_OBJECT = 2  # the single payload of an index / snapshot object: counter = 0
NONCE_DOMAIN_SLOT = 3  # a key slot's wrapped master key: counter = 0 (single-use key)

Random = Callable[[int], bytes]


def hkdf(ikm: bytes, info: bytes, *, salt: bytes | None = None, length: int = KEY_SIZE) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True)
class SubKeys:
    """The purpose keys derived from a master key.  ``repr`` never shows key bytes."""

    id_key: bytes
    chunker_key: bytes
    kek: bytes
    config_mac_key: bytes

    def __repr__(self) -> str:
        return "SubKeys(<secret>)"


def derive_subkeys(master_key: bytes) -> SubKeys:
    """All purpose keys of a repository from its master key."""
    if len(master_key) != KEY_SIZE:
        raise FormatError(what="master key", expected=f"{KEY_SIZE} bytes", got=f"{len(master_key)} bytes")
    return SubKeys(
        id_key=hkdf(master_key, INFO_CHUNK_ID),
        chunker_key=hkdf(master_key, INFO_CHUNKER),
        kek=hkdf(master_key, INFO_OBJECT_WRAP),
        config_mac_key=hkdf(master_key, INFO_CONFIG_MAC),
    )


# --- ids ------------------------------------------------------------------------------
def blob_id(id_key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2b-256 of the plaintext: dedups without revealing content."""
    return hashlib.blake2b(data, key=id_key, digest_size=ID_SIZE).digest()


def sha256_hex(data: bytes) -> str:
    """Object names of packs, indexes and snapshots: checkable without keys."""
    return hashlib.sha256(data).hexdigest()


# --- MAC ------------------------------------------------------------------------------
def mac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256."""
    h = c_hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def verify_mac(key: bytes, data: bytes, tag: bytes, what: str) -> None:
    if not _hmac.compare_digest(mac(key, data), tag):
        raise AuthenticationFailed(what=what)


# --- AEAD -----------------------------------------------------------------------------
def nonce(domain: int, counter: int) -> bytes:
    """96-bit GCM nonce ``domain(4, BE) || counter(8, BE)``."""
    if not (0 <= domain < 2**32 and 0 <= counter < 2**64):
        raise ValueError("nonce domain/counter out of range")
    return struct.pack(">IQ", domain, counter)


def seal(key: bytes, nonce_: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM encrypt; returns ``ciphertext || tag``."""
    return AESGCM(key).encrypt(nonce_, plaintext, aad)


def open_(key: bytes, nonce_: bytes, ciphertext: bytes, aad: bytes, what: str) -> bytes:
    """AES-256-GCM decrypt and authenticate, or raise ``AuthenticationFailed(what)``."""
    if len(ciphertext) < TAG_SIZE:
        raise FormatError(what=what, expected=f">= {TAG_SIZE} bytes of ciphertext", got=len(ciphertext))
    try:
        return AESGCM(key).decrypt(nonce_, ciphertext, aad)
    except InvalidTag as exc:
        raise AuthenticationFailed(what=what) from exc


# --- key wrap (RFC 3394) --------------------------------------------------------------
def wrap_key(kek: bytes, key: bytes) -> bytes:
    """AES key wrap of a 32-byte key under the 32-byte KEK (40 bytes out)."""
    return aes_key_wrap(kek, key)


def unwrap_key(kek: bytes, wrapped: bytes, what: str) -> bytes:
    if len(wrapped) != WRAPPED_KEY_SIZE:
        raise FormatError(what=what, expected=f"{WRAPPED_KEY_SIZE} bytes of wrapped key", got=len(wrapped))
    try:
        return aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap as exc:
        raise AuthenticationFailed(what=what) from exc


# --- X25519 ---------------------------------------------------------------------------
def x25519_public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def recovery_slot_key(shared: bytes, eph_pub: bytes, recipient_pub: bytes, salt: bytes) -> bytes:
    """Single-use slot key: HKDF over ``shared || eph_pub || recipient_pub``.

    Binding both public keys into the input stops an attacker from
    substituting either one (the same reason age and HPKE include them).
    """
    return hkdf(shared + eph_pub + recipient_pub, INFO_RECOVERY_SLOT, salt=salt)


def x25519_wrap(recipient_pub: bytes, salt: bytes, *, ephemeral: X25519PrivateKey | None = None) -> tuple[bytes, bytes]:
    """Return ``(eph_pub, slot_key)`` for a new recovery slot to ``recipient_pub``.

    ``ephemeral`` is injectable for test vectors only; normally a fresh key.
    """
    eph = ephemeral or X25519PrivateKey.generate()
    eph_pub = x25519_public_bytes(eph)
    try:
        shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_pub))
    except ValueError as exc:
        raise FormatError(what="recovery public key", expected="a valid X25519 key", got=str(exc)) from exc
    return eph_pub, recovery_slot_key(shared, eph_pub, recipient_pub, salt)


def x25519_unwrap(private: X25519PrivateKey, eph_pub: bytes, salt: bytes) -> bytes:
    """The slot key of a recovery slot, computed by the holder of the recipient's private key."""
    recipient_pub = x25519_public_bytes(private)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError as exc:
        raise AuthenticationFailed(what="recovery slot ephemeral key") from exc
    return recovery_slot_key(shared, eph_pub, recipient_pub, salt)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
