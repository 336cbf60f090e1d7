"""Compression algorithm registry (format v1).

Contract: ``compress(data)`` returns ``(algorithm_id, payload)`` and uses zstd
only when that makes the payload strictly smaller (incompressible data is
stored as is, id 0).  ``decompress(algorithm_id, payload, raw_length)``
returns exactly ``raw_length`` bytes or raises ``FormatError``; the expected
length comes from authenticated metadata, so a decompression bomb cannot make
us allocate more than the blob claims.

Registry (docs/format.md, "Algorithm registries").  Ids are one byte, are
part of every blob's associated data, and are **never reused** for a
different algorithm: a reader must never decode a blob with the wrong
algorithm.

=====  ======  ===================================================
  id   name    notes
=====  ======  ===================================================
   0   none    payload is the plaintext
   1   zstd    one zstd frame with content size, level ``ZSTD_LEVEL``
=====  ======  ===================================================
"""

from __future__ import annotations

import zstandard

from fleetsafe.errors import FormatError

COMP_NONE = 0
COMP_ZSTD = 1

ALGORITHMS: dict[int, str] = {COMP_NONE: "none", COMP_ZSTD: "zstd"}

#: zstd level used when writing.  Not a format parameter (any level decodes).
ZSTD_LEVEL = 3


def compress(data: bytes, algorithm: int = COMP_ZSTD, level: int = ZSTD_LEVEL) -> tuple[int, bytes]:
    """Compress ``data`` with ``algorithm`` if that saves space; return ``(id, payload)``."""
    if algorithm == COMP_NONE or not data:
        return COMP_NONE, bytes(data)
    if algorithm != COMP_ZSTD:
        raise FormatError(what="compression algorithm", expected=sorted(ALGORITHMS), got=algorithm)
    packed = zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)
    if len(packed) < len(data):
        return COMP_ZSTD, packed
    return COMP_NONE, bytes(data)


def decompress(algorithm: int, payload: bytes, raw_length: int) -> bytes:
    """Inverse of ``compress``; the result must be exactly ``raw_length`` bytes."""
    if algorithm == COMP_NONE:
        out = bytes(payload)
    elif algorithm == COMP_ZSTD:
        try:
            out = zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw_length)
        except zstandard.ZstdError as exc:
            raise FormatError(what="zstd payload", expected="a valid zstd frame", got=str(exc)) from exc
    else:
        raise FormatError(what="compression algorithm", expected=sorted(ALGORITHMS), got=algorithm)
    if len(out) != raw_length:
        raise FormatError(what="decompressed length", expected=raw_length, got=len(out))
    return out
