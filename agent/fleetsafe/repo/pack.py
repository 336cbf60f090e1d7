"""Pack files: immutable containers of encrypted blobs (format v1).

A pack is stored as ``packs/<first 2 hex>/<sha256 hex of the pack bytes>``, so
any copy on any target can be checked without keys (VER-CHECKSUM).  Layout::

    offset       size  field
    ── header (HEADER.size = 48 bytes; associated data of the trailer) ──
         0          4  magic "FSPK"
         4          1  version = 1
         5          1  cipher algorithm (1 = AES-256-GCM)
         6          1  wrap algorithm   (1 = AES key wrap under the repository KEK)
         7          1  reserved, 0
         8         40  wrapped data key DK (fresh, random, this pack only)
    ── blobs, back to back, from offset 48 ──
                       blob i = AES-256-GCM(DK, nonce(0, i), payload_i,
                                            aad = id_i(32) || type_i(1) || compression_i(1))
                       payload_i = compressed (or not) plaintext; length_i = len(payload_i) + 16
    ── trailer ──
                 T     AES-256-GCM(DK, nonce(1, 0), trailer plaintext, aad = header)
    ── footer (8 bytes) ──
         -8         4  T, unsigned big-endian
         -4         4  end magic "FSPE"

    trailer plaintext = count(4, BE) || count × entry
    entry (46 bytes)  = id(32) || type(1) || compression(1) || offset(4) || length(4) || raw length(4)

Blob ``i`` is the ``i``-th trailer entry; its GCM nonce counter is ``i``.
Because DK is fresh per pack, ``(DK, nonce)`` never repeats; the blob count
is bounded by ``MAX_BLOBS`` (far below the 2**32 the nonce format allows).
The trailer lets the index be rebuilt from the packs alone.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from fleetsafe import compress, crypto
from fleetsafe.errors import FormatError, IntegrityError, UnsupportedVersion
from fleetsafe.repo.config import CIPHER_AES256_GCM, WRAP_AES_KW

PACK_MAGIC = b"FSPK"
PACK_END_MAGIC = b"FSPE"
PACK_VERSION = 1
HEADER = struct.Struct(">4sBBBB40s")
FOOTER = struct.Struct(">I4s")
ENTRY = struct.Struct(">32sBBIII")
COUNT = struct.Struct(">I")
PACK_PREFIX = "packs/"

# Blob type registry (ids never reused).
BLOB_DATA = 1
BLOB_TREE = 2
BLOB_TYPES: dict[int, str] = {BLOB_DATA: "data", BLOB_TREE: "tree"}
BLOB_TYPE_IDS: dict[str, int] = {v: k for k, v in BLOB_TYPES.items()}

#: Hard bound on blobs per pack (nonce counters are 0..MAX_BLOBS-1).  A pack
#: is normally sealed at the target size long before this.
MAX_BLOBS = 1 << 20
#: Largest blob payload accepted (u32 length fields; chunks are <= 4 MiB).
MAX_BLOB_SIZE = 1 << 30


def pack_name(sha_hex: str) -> str:
    """Object name of the pack whose bytes hash to ``sha_hex``."""
    return f"{PACK_PREFIX}{sha_hex[:2]}/{sha_hex}"


def blob_aad(blob_id: bytes, blob_type: int, comp: int) -> bytes:
    return blob_id + bytes((blob_type, comp))


@dataclass(frozen=True)
class PackEntry:
    """One blob inside a pack, as listed in its trailer (and in the index)."""

    # Explicit __slots__ (dataclass(slots=True) needs 3.10): the index holds one per blob.
    __slots__ = ("blob_id", "blob_type", "comp", "length", "n", "offset", "raw_length")
    blob_id: bytes
    blob_type: int
    comp: int
    n: int  # position in the pack = GCM nonce counter
    offset: int
    length: int  # ciphertext bytes including the tag
    raw_length: int  # plaintext bytes before compression


def encrypt_blob(dk: bytes, n: int, blob_id: bytes, blob_type: int, comp: int, payload: bytes) -> bytes:
    """Blob ``n`` of a pack, sealed with the pack's data key."""
    if not 0 <= n < MAX_BLOBS:
        raise ValueError("blob counter out of range")
    return crypto.seal(dk, crypto.nonce(crypto.NONCE_DOMAIN_BLOB, n), payload, blob_aad(blob_id, blob_type, comp))


def decrypt_blob(dk: bytes, entry: PackEntry, ciphertext: bytes, id_key: bytes, what: str) -> bytes:
    """Authenticate, decrypt and decompress one blob, then re-check its id (keyed MAC of the plaintext)."""
    payload = crypto.open_(
        dk, crypto.nonce(crypto.NONCE_DOMAIN_BLOB, entry.n), ciphertext,
        blob_aad(entry.blob_id, entry.blob_type, entry.comp), what,
    )
    data = compress.decompress(entry.comp, payload, entry.raw_length)
    if crypto.blob_id(id_key, data) != entry.blob_id:
        # GCM authenticated the bytes, so this means a writer bug or a wrong id key.
        raise IntegrityError(f"{what}: plaintext does not match its blob id")
    return data


def make_header(wrapped_dk: bytes) -> bytes:
    return HEADER.pack(PACK_MAGIC, PACK_VERSION, CIPHER_AES256_GCM, WRAP_AES_KW, 0, wrapped_dk)


def parse_header(data: bytes, what: str) -> bytes:
    """Check a pack header; return the wrapped data key."""
    if len(data) < HEADER.size:
        raise FormatError(what=f"{what} header", expected=f">= {HEADER.size} bytes", got=len(data))
    magic, version, cipher, wrap, reserved, wrapped = HEADER.unpack_from(data)
    if magic != PACK_MAGIC:
        raise FormatError(what=f"{what} magic", expected=PACK_MAGIC.hex(), got=magic.hex())
    if version != PACK_VERSION:
        raise UnsupportedVersion(what=what, expected=PACK_VERSION, got=version)
    if cipher != CIPHER_AES256_GCM:
        raise FormatError(what=f"{what} cipher", expected=CIPHER_AES256_GCM, got=cipher)
    if wrap != WRAP_AES_KW:
        raise FormatError(what=f"{what} wrap algorithm", expected=WRAP_AES_KW, got=wrap)
    if reserved != 0:
        raise FormatError(what=f"{what} reserved byte", expected=0, got=reserved)
    return bytes(wrapped)


class PackWriter:
    """Accumulates encrypted blobs in memory until ``finish``.

    Not thread-safe.  Memory use is the pack size (about ``PACK_TARGET_SIZE``).
    """

    def __init__(self, kek: bytes, *, random: crypto.Random) -> None:
        self.dk = random(crypto.KEY_SIZE)
        self.header = make_header(crypto.wrap_key(kek, self.dk))
        self.body = bytearray(self.header)
        self.entries: list[PackEntry] = []
        self.by_id: dict[bytes, PackEntry] = {}

    def __len__(self) -> int:
        return len(self.body)

    @property
    def count(self) -> int:
        return len(self.entries)

    def add(self, blob_id: bytes, blob_type: int, comp: int, payload: bytes, raw_length: int) -> PackEntry:
        if len(payload) > MAX_BLOB_SIZE or raw_length > MAX_BLOB_SIZE:
            raise ValueError("blob too large")
        n = len(self.entries)
        ct = encrypt_blob(self.dk, n, blob_id, blob_type, comp, payload)
        entry = PackEntry(blob_id, blob_type, comp, n, len(self.body), len(ct), raw_length)
        self.body += ct
        self.entries.append(entry)
        self.by_id[blob_id] = entry
        return entry

    def read(self, entry: PackEntry) -> bytes:
        return bytes(self.body[entry.offset:entry.offset + entry.length])

    def finish(self) -> bytes:
        """The complete pack bytes (header, blobs, trailer, footer)."""
        plain = COUNT.pack(len(self.entries)) + b"".join(
            ENTRY.pack(e.blob_id, e.blob_type, e.comp, e.offset, e.length, e.raw_length) for e in self.entries
        )
        trailer = crypto.seal(self.dk, crypto.nonce(crypto.NONCE_DOMAIN_TRAILER, 0), plain, self.header)
        # One copy; the body stays untouched so finish() can be retried after a failed store.
        return b"".join((self.body, trailer, FOOTER.pack(len(trailer), PACK_END_MAGIC)))


def read_trailer(data: bytes, kek: bytes, what: str) -> tuple[bytes, list[PackEntry]]:
    """Parse a whole pack: returns ``(DK, entries)`` after authenticating the trailer.

    Checks every entry lies inside the blob area, in order, without overlap.
    """
    wrapped = parse_header(data, what)
    if len(data) < HEADER.size + FOOTER.size:
        raise FormatError(what=f"{what} length", expected=f">= {HEADER.size + FOOTER.size}", got=len(data))
    tlen, end_magic = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    if end_magic != PACK_END_MAGIC:
        raise FormatError(what=f"{what} end magic", expected=PACK_END_MAGIC.hex(), got=end_magic.hex())
    tstart = len(data) - FOOTER.size - tlen
    if tstart < HEADER.size:
        raise FormatError(what=f"{what} trailer length", expected=f"<= {len(data) - FOOTER.size - HEADER.size}", got=tlen)
    dk = crypto.unwrap_key(kek, wrapped, f"{what} data key")
    plain = crypto.open_(
        dk, crypto.nonce(crypto.NONCE_DOMAIN_TRAILER, 0), bytes(data[tstart:tstart + tlen]),
        bytes(data[:HEADER.size]), f"{what} trailer",
    )
    if len(plain) < COUNT.size:
        raise FormatError(what=f"{what} trailer", expected=">= 4 bytes", got=len(plain))
    (count,) = COUNT.unpack_from(plain)
    if len(plain) != COUNT.size + count * ENTRY.size:
        raise FormatError(what=f"{what} trailer size", expected=COUNT.size + count * ENTRY.size, got=len(plain))
    entries: list[PackEntry] = []
    expect_offset = HEADER.size
    for n in range(count):
        bid, btype, comp, off, length, raw = ENTRY.unpack_from(plain, COUNT.size + n * ENTRY.size)
        if btype not in BLOB_TYPES:
            raise FormatError(what=f"{what} blob {n} type", expected=sorted(BLOB_TYPES), got=btype)
        if comp not in compress.ALGORITHMS:
            raise FormatError(what=f"{what} blob {n} compression", expected=sorted(compress.ALGORITHMS), got=comp)
        if off != expect_offset or length < crypto.TAG_SIZE or off + length > tstart:
            raise FormatError(what=f"{what} blob {n} extent", expected=f"offset {expect_offset}, inside blob area",
                              got=f"offset {off} length {length}")
        expect_offset = off + length
        entries.append(PackEntry(bytes(bid), btype, comp, n, off, length, raw))
    if expect_offset != tstart:
        raise FormatError(what=f"{what} blob area", expected=f"ends at {tstart}", got=expect_offset)
    return dk, entries
