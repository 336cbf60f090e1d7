"""Generate the frozen known-answer vectors of repository format v1 (docs/format.md).

    .venv/bin/python tests/vectors/make_vectors.py --check   # compare, change nothing
    .venv/bin/python tests/vectors/make_vectors.py --write   # ONLY for a new format version

The JSON files next to this script are **frozen**: they were generated once
and committed.  ``tests/unit/agent/test_vectors.py`` recomputes every value
with the agent's code and fails on any difference.  If that test fails, the
code changed the format (chunk boundaries, ids, ciphertexts): fix the code.
Re-generating the files to make the test pass would silently break
deduplication and decryption of every existing repository.

Every input is fixed here; every random value the format uses is injected.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "agent"))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fleetsafe import compress, crypto, keys
from fleetsafe.chunker import Chunker, ChunkerParams, gear_table
from fleetsafe.repo import objects, tree
from fleetsafe.repo.config import RepoConfig
from fleetsafe.repo.pack import (
    BLOB_DATA,
    BLOB_TREE,
    PackWriter,
    encrypt_blob,
    pack_name,
)

MK = bytes(range(32))  # 000102...1f
STREAM_LABEL = b"fleetsafe v1 test stream"


def test_stream(n: int, label: bytes = STREAM_LABEL) -> bytes:
    """Deterministic pseudo-random bytes: SHA-256(label || counter as 8-byte BE), counter 0, 1, ..."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(label + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


class FixedRandom:
    """Injected randomness: returns the given byte strings in order (checks the sizes)."""

    def __init__(self, *values: bytes) -> None:
        self.values = list(values)

    def __call__(self, n: int) -> bytes:
        v = self.values.pop(0)
        assert len(v) == n, (len(v), n)
        return v


def _chunk_case(name: str, data_desc: str, data: bytes, key: bytes, id_key: bytes, params: ChunkerParams) -> dict[str, Any]:
    chunks = list(Chunker(key, params).chunk_bytes(data))
    return {
        "name": name,
        "input": data_desc,
        "input_sha256": hashlib.sha256(data).hexdigest(),
        "params": {"min": params.min_size, "avg": params.avg_size, "max": params.max_size},
        "lengths": [len(c) for c in chunks],
        "blob_ids": [crypto.blob_id(id_key, c).hex() for c in chunks],
    }


def chunker_vectors() -> dict[str, Any]:
    sub = crypto.derive_subkeys(MK)
    gear = gear_table(sub.chunker_key)
    return {
        "master_key": MK.hex(),
        "chunker_key": sub.chunker_key.hex(),
        "id_key": sub.id_key.hex(),
        "gear_table_first4": [f"{int(g):016x}" for g in gear[:4]],
        "gear_table_last": f"{int(gear[255]):016x}",
        "gear_table_sha256": hashlib.sha256(gear.astype("<u8").tobytes()).hexdigest(),
        "cases": [
            _chunk_case("default params, 4 MiB pseudo-random", "test_stream(4194304)",
                        test_stream(4 * 1024 * 1024), sub.chunker_key, sub.id_key, ChunkerParams()),
            _chunk_case("default params, 9 MiB pseudo-random", "test_stream(9437184)",
                        test_stream(9 * 1024 * 1024), sub.chunker_key, sub.id_key, ChunkerParams()),
            _chunk_case("small params, 1 MiB pseudo-random", "test_stream(1048576)",
                        test_stream(1024 * 1024), sub.chunker_key, sub.id_key, ChunkerParams(4096, 16384, 65536)),
            _chunk_case("small params, 256 KiB of zeros", "bytes(262144)",
                        bytes(256 * 1024), sub.chunker_key, sub.id_key, ChunkerParams(4096, 16384, 65536)),
            _chunk_case("small params, empty input", "b''", b"", sub.chunker_key, sub.id_key,
                        ChunkerParams(4096, 16384, 65536)),
        ],
    }


def crypto_vectors() -> dict[str, Any]:
    sub = crypto.derive_subkeys(MK)
    dk = bytes(range(0x40, 0x60))
    plaintext = b"fleetsafe test blob\n"
    bid = crypto.blob_id(sub.id_key, plaintext)
    zstd_frame = bytes.fromhex("28b52ffd206445000010616101003f012c")  # zstd of b"a"*100, any writer
    return {
        "master_key": MK.hex(),
        "hkdf": {
            "fleetsafe v1 chunk-id": sub.id_key.hex(),
            "fleetsafe v1 chunker": sub.chunker_key.hex(),
            "fleetsafe v1 object-wrap": sub.kek.hex(),
            "fleetsafe v1 config-mac": sub.config_mac_key.hex(),
        },
        "blob_id": {"id_key": sub.id_key.hex(), "plaintext": plaintext.hex(), "id": bid.hex(),
                    "empty_id": crypto.blob_id(sub.id_key, b"").hex()},
        "nonces": {"blob 0": crypto.nonce(0, 0).hex(), "blob 5": crypto.nonce(0, 5).hex(),
                   "trailer": crypto.nonce(1, 0).hex(), "object": crypto.nonce(2, 0).hex(),
                   "slot": crypto.nonce(3, 0).hex()},
        "key_wrap": {"kek": sub.kek.hex(), "key": dk.hex(), "wrapped": crypto.wrap_key(sub.kek, dk).hex()},
        "blob": {
            "dk": dk.hex(), "n": 5, "id": bid.hex(), "type": BLOB_TREE, "compression": compress.COMP_NONE,
            "payload": plaintext.hex(), "aad": (bid + bytes((BLOB_TREE, compress.COMP_NONE))).hex(),
            "ciphertext": encrypt_blob(dk, 5, bid, BLOB_TREE, compress.COMP_NONE, plaintext).hex(),
        },
        "zstd": {"frame": zstd_frame.hex(), "raw_length": 100,
                 "plaintext_sha256": hashlib.sha256(compress.decompress(1, zstd_frame, 100)).hexdigest()},
        "hmac": {"key": sub.config_mac_key.hex(), "data": b"abc".hex(),
                 "mac": crypto.mac(sub.config_mac_key, b"abc").hex()},
    }


def key_vectors() -> dict[str, Any]:
    host_key = bytes(range(0x80, 0xA0))
    repo_id = bytes(range(0xA0, 0xB0))
    salt_h = bytes([0x11]) * 32
    salt_r = bytes([0x22]) * 32
    recipient = X25519PrivateKey.from_private_bytes(bytes(range(0xC0, 0xE0)))
    eph = X25519PrivateKey.from_private_bytes(bytes(range(0xE0, 0x100)))
    rpub = crypto.x25519_public_bytes(recipient)
    created = 1_764_777_600  # 2025-12-03T16:00:00Z
    hfp, hslot = keys.make_host_slot(MK, host_key, repo_id, created=created, random=FixedRandom(salt_h))
    rfp, rslot = keys.make_recovery_slot(MK, rpub, repo_id, created=created, random=FixedRandom(salt_r),
                                         ephemeral=eph)
    return {
        "master_key": MK.hex(),
        "host_key": host_key.hex(),
        "host_key_file": keys.encode_host_key(host_key).decode(),
        "host_fingerprint": hfp,
        "repo_id": repo_id.hex(),
        "created": created,
        "host_slot": {"salt": salt_h.hex(), "slot": hslot.hex()},
        "recovery_private": bytes(range(0xC0, 0xE0)).hex(),
        "recovery_public": rpub.hex(),
        "recovery_fingerprint": rfp,
        "recovery_slot": {"salt": salt_r.hex(), "ephemeral_private": bytes(range(0xE0, 0x100)).hex(),
                          "ephemeral_public": crypto.x25519_public_bytes(eph).hex(), "slot": rslot.hex()},
    }


def repo_vectors() -> dict[str, Any]:
    sub = crypto.derive_subkeys(MK)
    repo_id = bytes(range(0xA0, 0xB0))
    cfg = RepoConfig(repo_id=repo_id, created=1_764_777_600, chunker=ChunkerParams())
    dk = bytes(range(0x40, 0x60))
    w = PackWriter(sub.kek, random=FixedRandom(dk))
    blobs = [(b"first data blob", BLOB_DATA), (b"", BLOB_DATA), (b'{"n":"a","type":"dir"}\n', BLOB_TREE)]
    for data, btype in blobs:
        w.add(crypto.blob_id(sub.id_key, data), btype, compress.COMP_NONE, data, len(data))
    pack = w.finish()
    sha = crypto.sha256_hex(pack)
    obj_dk = bytes(range(0x60, 0x80))
    payload = objects.canonical_json({"v": 1, "host": "web1", "tree": []})
    obj = objects.seal_object(objects.OBJ_SNAPSHOT, payload, sub.kek, random=FixedRandom(obj_dk),
                              comp_algorithm=compress.COMP_NONE)
    entries = [
        {"path": b"etc", "type": "dir", "mode": 0o40755, "uid": 0, "gid": 0, "user": "root", "group": "root",
         "mtime_ns": 1_700_000_000_000_000_000, "ctime_ns": 1_700_000_000_000_000_000, "ino": 2, "dev": 64769},
        {"path": b"etc/caf\xe9", "type": "file", "mode": 0o100644, "size": 15,
         "content": [crypto.blob_id(sub.id_key, b"first data blob").hex()]},
        {"path": "etc/ünï".encode(), "type": "symlink", "target": b"../\xff"},
    ]
    return {
        "master_key": MK.hex(),
        "config": {"repo_id": repo_id.hex(), "created": 1_764_777_600,
                   "bytes": cfg.serialize(sub.config_mac_key).hex()},
        "pack": {"dk": dk.hex(), "blobs": [{"plaintext": d.hex(), "type": t} for d, t in blobs],
                 "bytes": pack.hex(), "name": pack_name(sha)},
        "snapshot_object": {"dk": obj_dk.hex(), "payload": payload.decode(), "bytes": obj.hex(),
                            "name": "snapshots/" + crypto.sha256_hex(obj)},
        "tree": {"lines": [tree.encode_entry(e).decode("ascii") for e in entries]},
    }


VECTORS = {
    "chunker.json": chunker_vectors,
    "crypto.json": crypto_vectors,
    "keys.json": key_vectors,
    "repo.json": repo_vectors,
}


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "--check"
    bad = 0
    for fname, fn in VECTORS.items():
        text = json.dumps(fn(), indent=1, sort_keys=True) + "\n"
        path = HERE / fname
        if mode == "--write":
            path.write_text(text)
            print(f"wrote {path}")
        elif not path.exists() or path.read_text() != text:
            print(f"DIFFERS: {path}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
