"""The repository ``config`` object and the format-wide algorithm registries.

The config is plaintext (it must be readable before any key is known: it
carries the repository id the key slots are bound to) but authenticated: an
HMAC-SHA256 under ``config_mac_key`` (derived from the master key) covers
every byte, and is checked right after the master key is unwrapped, so a
tampered chunker parameter or algorithm id is detected before it is used::

    offset size  field
         0    4  magic "FSRC"
         4    1  version = 1
         5    1  blob id algorithm      (ID_ALGORITHMS)
         6    1  chunker algorithm      (CHUNKER_ALGORITHMS)
         7    1  cipher algorithm       (CIPHER_ALGORITHMS)
         8    1  data-key wrap algorithm (WRAP_ALGORITHMS)
         9    1  compression algorithm used when writing (compress.ALGORITHMS)
        10    2  reserved, 0
        12   16  repository id (random)
        28    8  created, Unix seconds, unsigned big-endian
        36    4  chunker min size, unsigned big-endian
        40    4  chunker average size (a power of two)
        44    4  chunker max size
        48    4  pack target size
        52   32  HMAC-SHA256(config_mac_key, bytes 0..51)
        84       (end)

All multi-byte integers in format v1 are big-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from fleetsafe import compress, crypto
from fleetsafe.chunker import ChunkerParams
from fleetsafe.errors import FormatError, UnsupportedVersion

CONFIG_NAME = "config"
CONFIG_MAGIC = b"FSRC"
FORMAT_VERSION = 1

# --- algorithm registries (ids never reused) -------------------------------------------
ID_BLAKE2B_256_KEYED = 1
ID_ALGORITHMS = {ID_BLAKE2B_256_KEYED: "blake2b-256-keyed"}

CHUNKER_FASTCDC_GEAR64_V1 = 1
CHUNKER_ALGORITHMS = {CHUNKER_FASTCDC_GEAR64_V1: "fastcdc-gear64-hkdf-v1"}

CIPHER_AES256_GCM = 1
CIPHER_ALGORITHMS = {CIPHER_AES256_GCM: "aes-256-gcm"}

#: How a pack's / object's data key is wrapped.  1 = AES key wrap (RFC 3394)
#: under the repository KEK.  Reserved for later: a public-key wrap so that
#: write-only hosts can add packs they cannot read, without a new format.
WRAP_AES_KW = 1
WRAP_ALGORITHMS = {WRAP_AES_KW: "aes-256-kw-rfc3394"}

#: Default target size of a pack file (a pack is sealed once it reaches it).
PACK_TARGET_SIZE = 16 * 1024 * 1024

_BODY = struct.Struct(">4sBBBBBBH16sQIIII")
MAC_SIZE = 32
CONFIG_SIZE = _BODY.size + MAC_SIZE


@dataclass(frozen=True)
class RepoConfig:
    repo_id: bytes
    created: int
    chunker: ChunkerParams
    pack_size: int = PACK_TARGET_SIZE
    id_algorithm: int = ID_BLAKE2B_256_KEYED
    chunker_algorithm: int = CHUNKER_FASTCDC_GEAR64_V1
    cipher: int = CIPHER_AES256_GCM
    wrap: int = WRAP_AES_KW
    compression: int = compress.COMP_ZSTD

    def body(self) -> bytes:
        return _BODY.pack(
            CONFIG_MAGIC, FORMAT_VERSION, self.id_algorithm, self.chunker_algorithm, self.cipher, self.wrap,
            self.compression, 0, self.repo_id, self.created, self.chunker.min_size, self.chunker.avg_size,
            self.chunker.max_size, self.pack_size,
        )

    def serialize(self, config_mac_key: bytes) -> bytes:
        body = self.body()
        return body + crypto.mac(config_mac_key, body)


def _expect(what: str, got: int, registry: dict[int, str]) -> None:
    if got not in registry:
        raise FormatError(what=what, expected=f"one of {sorted(registry)}", got=got)


def parse_config(data: bytes) -> tuple[RepoConfig, bytes]:
    """Strictly parse the config; returns ``(config, mac)``.  The MAC is checked by ``verify_config``."""
    if len(data) != CONFIG_SIZE:
        raise FormatError(what="config length", expected=CONFIG_SIZE, got=len(data))
    (magic, version, id_alg, ch_alg, cipher, wrap, comp, reserved, repo_id, created, cmin, cavg, cmax,
     pack_size) = _BODY.unpack_from(data)
    if magic != CONFIG_MAGIC:
        raise FormatError(what="config magic", expected=CONFIG_MAGIC.hex(), got=magic.hex())
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(what="repository format", expected=FORMAT_VERSION, got=version)
    _expect("config blob id algorithm", id_alg, ID_ALGORITHMS)
    _expect("config chunker algorithm", ch_alg, CHUNKER_ALGORITHMS)
    _expect("config cipher algorithm", cipher, CIPHER_ALGORITHMS)
    _expect("config wrap algorithm", wrap, WRAP_ALGORITHMS)
    _expect("config compression algorithm", comp, compress.ALGORITHMS)
    if reserved != 0:
        raise FormatError(what="config reserved bytes", expected=0, got=reserved)
    if not (1024 <= pack_size < 2**31):
        raise FormatError(what="config pack size", expected="1 KiB .. 2 GiB", got=pack_size)
    cfg = RepoConfig(
        repo_id=repo_id, created=created, chunker=ChunkerParams(cmin, cavg, cmax), pack_size=pack_size,
        id_algorithm=id_alg, chunker_algorithm=ch_alg, cipher=cipher, wrap=wrap, compression=comp,
    )
    return cfg, bytes(data[_BODY.size:])


def verify_config(data: bytes, config_mac_key: bytes) -> None:
    """``AuthenticationFailed`` unless the config's MAC is valid under the unlocked master key."""
    crypto.verify_mac(config_mac_key, bytes(data[:_BODY.size]), bytes(data[_BODY.size:]), "repository config")
