"""Key files on disk, fingerprints and key slots (format v1).

Contract
--------
* **Host key file** (``/etc/fleetsafe/keys/repo.key``): one line, the base64
  of 32 random bytes.  ``create_host_key`` creates it 0600 with
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` and refuses to overwrite anything (a re-run of
  the role must never replace a key: backups made with it would be lost).
  ``load_host_key`` refuses symlinks and warns (``strict=True``: refuses) when
  group or others may read the file.
* **Recovery key pair** (organisation, X25519): the private key as PKCS#8 PEM
  encrypted with a passphrase (``BestAvailableEncryption``), the public key as
  SubjectPublicKeyInfo PEM.
* **Fingerprints** are 32 hex characters: the first 16 bytes of
  ``SHA-256("fleetsafe v1 fingerprint" || 0x00 || slot type || key material)``
  where the material is the host secret key or the recovery *public* key.  A
  fingerprint identifies a key without revealing it and is safe in logs, git
  and reports; the type byte keeps the two kinds from ever colliding.
* **Key slots** wrap the repository master key ``MK``.  Each is stored as
  object ``keys/<fingerprint>`` so opening needs no search::

      offset size  field
           0    4  magic "FSKS"
           4    1  version = 1
           5    1  slot type: 1 = host, 2 = recovery
           6    1  algorithm id (SLOT_ALGORITHMS)
           7    1  reserved, 0
           8    8  created, Unix seconds, unsigned big-endian
          16   16  repository id
          32   16  fingerprint (raw bytes)
          48   32  salt (random per slot)
          80   32  ephemeral X25519 public key   (recovery slots only)
         ...   48  AES-256-GCM(slot key, nonce(3, 0), MK, aad = all bytes above)

  Host slot key = ``HKDF-SHA256(host key, salt, "fleetsafe v1 host-slot")``;
  recovery slot key = ``HKDF-SHA256(X25519(eph, recipient) || eph_pub ||
  recipient_pub, salt, "fleetsafe v1 recovery-slot")``.  Each slot key is
  used for exactly one encryption (fresh salt / ephemeral key), so the fixed
  nonce is safe.  The header is the associated data: a slot moved to another
  repository, or with an edited type or fingerprint, fails to open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from fleetsafe import crypto
from fleetsafe.errors import (
    AuthenticationFailed,
    FormatError,
    KeyFileError,
    UnsupportedVersion,
    WrongPassphrase,
)

log = logging.getLogger(__name__)

HOST_KEY_SIZE = 32
FINGERPRINT_SIZE = 16  # bytes; 32 hex characters
FINGERPRINT_DOMAIN = b"fleetsafe v1 fingerprint\x00"

SLOT_MAGIC = b"FSKS"
SLOT_VERSION = 1
SLOT_TYPE_HOST = 1
SLOT_TYPE_RECOVERY = 2
SLOT_TYPES: dict[int, str] = {SLOT_TYPE_HOST: "host", SLOT_TYPE_RECOVERY: "recovery"}

# Algorithm registry of key slots: ids are never reused.
SLOT_ALG_HOST_HKDF_AESGCM = 1  # HKDF-SHA256(host key, salt) -> AES-256-GCM
SLOT_ALG_X25519_HKDF_AESGCM = 2  # X25519 ECDH -> HKDF-SHA256 -> AES-256-GCM
SLOT_ALGORITHMS: dict[int, str] = {
    SLOT_ALG_HOST_HKDF_AESGCM: "host-hkdf-sha256-aes256gcm",
    SLOT_ALG_X25519_HKDF_AESGCM: "x25519-hkdf-sha256-aes256gcm",
}
_SLOT_ALG_FOR_TYPE = {SLOT_TYPE_HOST: SLOT_ALG_HOST_HKDF_AESGCM, SLOT_TYPE_RECOVERY: SLOT_ALG_X25519_HKDF_AESGCM}

#: magic, version, type, algorithm, reserved, created, repo id, fingerprint, salt
SLOT_HEADER = struct.Struct(">4sBBBBQ16s16s32s")
SLOT_SALT_SIZE = 32
SLOT_CT_SIZE = crypto.KEY_SIZE + crypto.TAG_SIZE
REPO_ID_SIZE = 16


# --- fingerprints ---------------------------------------------------------------------
def fingerprint(slot_type: int, material: bytes) -> str:
    """Hex fingerprint of a key (see module docstring)."""
    digest = hashlib.sha256(FINGERPRINT_DOMAIN + bytes([slot_type]) + material).digest()
    return digest[:FINGERPRINT_SIZE].hex()


def host_fingerprint(host_key: bytes) -> str:
    _check_host_key(host_key)
    return fingerprint(SLOT_TYPE_HOST, host_key)


def recovery_fingerprint(public: bytes | X25519PublicKey | X25519PrivateKey) -> str:
    raw = public if isinstance(public, bytes) else crypto.x25519_public_bytes(public)
    if len(raw) != crypto.X25519_SIZE:
        raise FormatError(what="recovery public key", expected="32 raw bytes", got=f"{len(raw)} bytes")
    return fingerprint(SLOT_TYPE_RECOVERY, raw)


def _check_host_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != HOST_KEY_SIZE:
        raise FormatError(what="host key", expected=f"{HOST_KEY_SIZE} bytes", got=f"{len(key)} bytes")


# --- key files ------------------------------------------------------------------------
def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode``; never follow a symlink, never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except FileExistsError as exc:
        raise KeyFileError("exists; refusing to overwrite a key", path=str(path)) from exc
    except OSError as exc:
        raise KeyFileError(exc.strerror or str(exc), path=str(path)) from exc
    try:
        os.fchmod(fd, mode)  # the umask must not loosen or tighten what we promise
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_private(path: Path, *, strict: bool) -> bytes:
    """Read a secret file without following symlinks; check its mode."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise KeyFileError("does not exist", path=str(path)) from exc
    except OSError as exc:
        raise KeyFileError(exc.strerror or str(exc), path=str(path)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError("not a regular file", path=str(path))
        if st.st_mode & 0o077:
            msg = f"mode {stat.S_IMODE(st.st_mode):04o} lets group/others access a secret key; expected 0600"
            if strict:
                raise KeyFileError(msg, path=str(path))
            log.warning("key file %s: %s", path, msg)
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def encode_host_key(key: bytes) -> bytes:
    _check_host_key(key)
    return base64.b64encode(key) + b"\n"


def decode_host_key(text: bytes, path: str = "<memory>") -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError("not base64", path=path) from exc
    if len(key) != HOST_KEY_SIZE:
        raise KeyFileError(f"expected {HOST_KEY_SIZE} bytes of key, got {len(key)}", path=path)
    return key


def create_host_key(path: str | os.PathLike[str], *, random: crypto.Random = os.urandom) -> bytes:
    """Create a new host key file (0600); raise ``KeyFileError`` if the path exists."""
    key = random(HOST_KEY_SIZE)
    _write_new(Path(path), encode_host_key(key), 0o600)
    return key


def load_host_key(path: str | os.PathLike[str], *, strict: bool = False) -> bytes:
    """The 32-byte host key from its file.  Group/other access: warning, or error when ``strict``."""
    return decode_host_key(_read_private(Path(path), strict=strict), str(path))


def create_recovery_keypair(
    private_path: str | os.PathLike[str], public_path: str | os.PathLike[str], passphrase: bytes,
) -> str:
    """Create the organisation's recovery key pair; return its fingerprint.  Never overwrites."""
    if not passphrase:
        raise KeyFileError("an empty passphrase is not allowed", path=str(private_path))
    if Path(public_path).exists() or Path(private_path).exists():
        raise KeyFileError("exists; refusing to overwrite a key", path=f"{private_path} / {public_path}")
    priv = X25519PrivateKey.generate()
    pem = priv.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase))
    pub = priv.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    _write_new(Path(private_path), pem, 0o600)
    _write_new(Path(public_path), pub, 0o644)
    return recovery_fingerprint(priv)


def load_recovery_private(path: str | os.PathLike[str], passphrase: bytes, *, strict: bool = False) -> X25519PrivateKey:
    data = _read_private(Path(path), strict=strict)
    try:
        key = load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        if b"ENCRYPTED" in data:
            raise WrongPassphrase("cannot decrypt the private key (wrong passphrase?)", path=str(path)) from exc
        raise KeyFileError("cannot decrypt or parse the private key (wrong passphrase?)", path=str(path)) from exc
    if not isinstance(key, X25519PrivateKey):
        raise KeyFileError("not an X25519 private key", path=str(path))
    return key


def parse_recovery_public(data: bytes) -> bytes:
    """Raw 32-byte X25519 public key from raw bytes or SubjectPublicKeyInfo PEM."""
    if len(data) == crypto.X25519_SIZE:
        return bytes(data)
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise FormatError(what="recovery public key", expected="32 raw bytes or a PEM public key", got=f"{len(data)} bytes") from exc
    if not isinstance(key, X25519PublicKey):
        raise FormatError(what="recovery public key", expected="X25519", got=type(key).__name__)
    return crypto.x25519_public_bytes(key)


def load_recovery_public(path: str | os.PathLike[str]) -> bytes:
    """Raw 32-byte public key from a PEM file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(exc.strerror or str(exc), path=str(path)) from exc
    return parse_recovery_public(data)


# --- key slots --------------------------------------------------------------------------
@dataclass(frozen=True)
class KeySlot:
    """A parsed key slot.  ``header`` is the associated data of ``ciphertext``."""

    slot_type: int
    algorithm: int
    created: int
    repo_id: bytes
    fingerprint: str
    salt: bytes
    eph_pub: bytes  # empty for host slots
    header: bytes
    ciphertext: bytes

    @property
    def type_name(self) -> str:
        return SLOT_TYPES[self.slot_type]

    def describe(self) -> dict[str, object]:
        return {
            "type": self.type_name,
            "fingerprint": self.fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "algorithm": SLOT_ALGORITHMS[self.algorithm],
        }


def _slot_header(slot_type: int, created: int, repo_id: bytes, fp: str, salt: bytes, eph_pub: bytes) -> bytes:
    if len(repo_id) != REPO_ID_SIZE or len(salt) != SLOT_SALT_SIZE:
        raise ValueError("bad repository id or salt length")
    head = SLOT_HEADER.pack(
        SLOT_MAGIC, SLOT_VERSION, slot_type, _SLOT_ALG_FOR_TYPE[slot_type], 0, created, repo_id, bytes.fromhex(fp), salt,
    )
    return head + eph_pub


def make_host_slot(
    master_key: bytes, host_key: bytes, repo_id: bytes, *, created: int | None = None,
    random: crypto.Random = os.urandom,
) -> tuple[str, bytes]:
    """A host slot wrapping ``master_key``; returns ``(fingerprint, slot bytes)``."""
    fp = host_fingerprint(host_key)
    salt = random(SLOT_SALT_SIZE)
    header = _slot_header(SLOT_TYPE_HOST, int(time.time()) if created is None else created, repo_id, fp, salt, b"")
    slot_key = crypto.hkdf(host_key, crypto.INFO_HOST_SLOT, salt=salt)
    ct = crypto.seal(slot_key, crypto.nonce(crypto.NONCE_DOMAIN_SLOT, 0), master_key, header)
    return fp, header + ct


def make_recovery_slot(
    master_key: bytes, recipient_pub: bytes, repo_id: bytes, *, created: int | None = None,
    random: crypto.Random = os.urandom, ephemeral: X25519PrivateKey | None = None,
) -> tuple[str, bytes]:
    """A recovery slot wrapping ``master_key`` to the organisation's public key."""
    fp = recovery_fingerprint(recipient_pub)
    salt = random(SLOT_SALT_SIZE)
    eph_pub, slot_key = crypto.x25519_wrap(recipient_pub, salt, ephemeral=ephemeral)
    header = _slot_header(
        SLOT_TYPE_RECOVERY, int(time.time()) if created is None else created, repo_id, fp, salt, eph_pub,
    )
    ct = crypto.seal(slot_key, crypto.nonce(crypto.NONCE_DOMAIN_SLOT, 0), master_key, header)
    return fp, header + ct


def parse_slot(data: bytes, name: str = "key slot") -> KeySlot:
    """Strictly parse a slot object (no keys needed)."""
    if len(data) < SLOT_HEADER.size:
        raise FormatError(what=name, expected=f">= {SLOT_HEADER.size} bytes", got=len(data))
    magic, version, stype, alg, reserved, created, repo_id, fp, salt = SLOT_HEADER.unpack_from(data)
    if magic != SLOT_MAGIC:
        raise FormatError(what=f"{name} magic", expected=SLOT_MAGIC.hex(), got=magic.hex())
    if version != SLOT_VERSION:
        raise UnsupportedVersion(what=name, expected=SLOT_VERSION, got=version)
    if stype not in SLOT_TYPES:
        raise FormatError(what=f"{name} type", expected=sorted(SLOT_TYPES), got=stype)
    if alg != _SLOT_ALG_FOR_TYPE[stype]:
        raise FormatError(what=f"{name} algorithm", expected=_SLOT_ALG_FOR_TYPE[stype], got=alg)
    if reserved != 0:
        raise FormatError(what=f"{name} reserved byte", expected=0, got=reserved)
    header_len = SLOT_HEADER.size + (crypto.X25519_SIZE if stype == SLOT_TYPE_RECOVERY else 0)
    if len(data) != header_len + SLOT_CT_SIZE:
        raise FormatError(what=f"{name} length", expected=header_len + SLOT_CT_SIZE, got=len(data))
    return KeySlot(
        slot_type=stype, algorithm=alg, created=created, repo_id=repo_id, fingerprint=fp.hex(), salt=salt,
        eph_pub=bytes(data[SLOT_HEADER.size:header_len]), header=bytes(data[:header_len]),
        ciphertext=bytes(data[header_len:]),
    )


def open_slot(
    slot: KeySlot, *, host_key: bytes | None = None, recovery_private: X25519PrivateKey | None = None,
) -> bytes:
    """The master key wrapped by ``slot``; ``AuthenticationFailed`` with a wrong key or a tampered slot."""
    what = f"key slot {slot.fingerprint}"
    if slot.slot_type == SLOT_TYPE_HOST:
        if host_key is None:
            raise AuthenticationFailed(what=what)
        slot_key = crypto.hkdf(host_key, crypto.INFO_HOST_SLOT, salt=slot.salt)
    else:
        if recovery_private is None:
            raise AuthenticationFailed(what=what)
        slot_key = crypto.x25519_unwrap(recovery_private, slot.eph_pub, slot.salt)
    mk = crypto.open_(slot_key, crypto.nonce(crypto.NONCE_DOMAIN_SLOT, 0), slot.ciphertext, slot.header, what)
    if len(mk) != crypto.KEY_SIZE:
        raise FormatError(what=f"{what} master key", expected=crypto.KEY_SIZE, got=len(mk))
    return mk
