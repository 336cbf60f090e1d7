"""Sealed JSON objects: index objects and snapshot manifests (format v1).

Stored as ``index/<sha256 hex>`` and ``snapshots/<sha256 hex>`` (the hash of
the stored bytes, like packs).  Same envelope as a pack with one blob: a fresh
random data key DK per object, wrapped under the repository KEK::

    offset size  field
         0    4  magic "FSOB"
         4    1  version = 1
         5    1  object type: 1 = index, 2 = snapshot
         6    1  cipher algorithm (1 = AES-256-GCM)
         7    1  wrap algorithm   (1 = AES key wrap under the KEK)
         8    1  compression id of the payload (compress.ALGORITHMS)
         9    3  reserved, 0
        12    8  raw length of the JSON payload, unsigned big-endian
        20   40  wrapped DK
        60       AES-256-GCM(DK, nonce(2, 0), payload, aad = bytes 0..59)

The payload is UTF-8 JSON (``sort_keys``, compact separators), compressed
when that helps.  DK is used for exactly one encryption, so the fixed nonce
is safe; the header (object type included) is authenticated, so an index can
never be passed off as a snapshot or the other way round.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from fleetsafe import compress, crypto
from fleetsafe.errors import FormatError, UnsupportedVersion
from fleetsafe.repo.config import CIPHER_AES256_GCM, WRAP_AES_KW

OBJECT_MAGIC = b"FSOB"
OBJECT_VERSION = 1
OBJ_INDEX = 1
OBJ_SNAPSHOT = 2
OBJECT_TYPES = {OBJ_INDEX: "index", OBJ_SNAPSHOT: "snapshot"}
OBJECT_HEADER = struct.Struct(">4sBBBBB3sQ40s")
OBJECT_PREFIX = {OBJ_INDEX: "index/", OBJ_SNAPSHOT: "snapshots/"}


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal_object(obj_type: int, payload: bytes, kek: bytes, *, random: crypto.Random,
                comp_algorithm: int = compress.COMP_ZSTD) -> bytes:
    """Envelope ``payload`` (already serialised) as an object of ``obj_type``."""
    dk = random(crypto.KEY_SIZE)
    comp, packed = compress.compress(payload, comp_algorithm)
    header = OBJECT_HEADER.pack(
        OBJECT_MAGIC, OBJECT_VERSION, obj_type, CIPHER_AES256_GCM, WRAP_AES_KW, comp, b"\0\0\0", len(payload),
        crypto.wrap_key(kek, dk),
    )
    return header + crypto.seal(dk, crypto.nonce(crypto.NONCE_DOMAIN_OBJECT, 0), packed, header)


def open_object(data: bytes, obj_type: int, kek: bytes, what: str) -> bytes:
    """Authenticate and decrypt an object of ``obj_type``; returns the payload."""
    if len(data) < OBJECT_HEADER.size + crypto.TAG_SIZE:
        raise FormatError(what=f"{what} length", expected=f">= {OBJECT_HEADER.size + crypto.TAG_SIZE}", got=len(data))
    magic, version, otype, cipher, wrap, comp, reserved, raw_len, wrapped = OBJECT_HEADER.unpack_from(data)
    if magic != OBJECT_MAGIC:
        raise FormatError(what=f"{what} magic", expected=OBJECT_MAGIC.hex(), got=magic.hex())
    if version != OBJECT_VERSION:
        raise UnsupportedVersion(what=what, expected=OBJECT_VERSION, got=version)
    if otype != obj_type:
        raise FormatError(what=f"{what} object type", expected=OBJECT_TYPES[obj_type], got=OBJECT_TYPES.get(otype, otype))
    if cipher != CIPHER_AES256_GCM or wrap != WRAP_AES_KW:
        raise FormatError(what=f"{what} algorithms", expected=f"{CIPHER_AES256_GCM}/{WRAP_AES_KW}", got=f"{cipher}/{wrap}")
    if comp not in compress.ALGORITHMS:
        raise FormatError(what=f"{what} compression", expected=sorted(compress.ALGORITHMS), got=comp)
    if reserved != b"\0\0\0":
        raise FormatError(what=f"{what} reserved bytes", expected="000000", got=reserved.hex())
    dk = crypto.unwrap_key(kek, wrapped, f"{what} data key")
    header = bytes(data[:OBJECT_HEADER.size])
    packed = crypto.open_(dk, crypto.nonce(crypto.NONCE_DOMAIN_OBJECT, 0), bytes(data[OBJECT_HEADER.size:]), header, what)
    return compress.decompress(comp, packed, raw_len)


def open_json(data: bytes, obj_type: int, kek: bytes, what: str) -> Any:
    payload = open_object(data, obj_type, kek, what)
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(what=f"{what} payload", expected="UTF-8 JSON", got=str(exc)) from exc
