"""Frozen known-answer vectors of format v1 (docs/format.md, "Test vectors"; ENC-REST, VER-CHECKSUM).

Two directions:

* **write**: recomputing every vector from its fixed inputs (all randomness
  injected) must give the frozen bytes.  A failure means the code changed
  chunk boundaries, ids or ciphertexts: existing repositories would stop
  deduplicating or opening.  Fix the code; never regenerate the files.
* **read**: the frozen bytes (slots, config, pack, snapshot object, tree
  lines) must still parse, authenticate and decrypt to the stated plaintext.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fleetsafe import compress, crypto, keys
from fleetsafe.chunker import ChunkerParams
from fleetsafe.repo import objects, tree
from fleetsafe.repo.config import parse_config, verify_config
from fleetsafe.repo.pack import decrypt_blob, read_trailer

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
sys.path.insert(0, str(VECTORS))
import make_vectors
from test_chunker import reference_chunks


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


@pytest.mark.parametrize("fname", sorted(make_vectors.VECTORS))
def test_recomputed_vectors_match_frozen(fname):
    frozen = load(fname)
    fresh = json.loads(json.dumps(make_vectors.VECTORS[fname]()))
    for key in sorted(set(frozen) | set(fresh)):
        assert fresh.get(key) == frozen.get(key), f"{fname}: {key} changed - the repository format moved"


def test_test_stream_definition():
    # SHA-256 counter mode, as docs/format.md states it.
    import hashlib

    assert make_vectors.test_stream(40) == (hashlib.sha256(b"fleetsafe v1 test stream" + bytes(8)).digest()
                                            + hashlib.sha256(b"fleetsafe v1 test stream" + b"\0" * 7 + b"\1").digest()[:8])


def test_chunker_vector_against_pure_python_reference():
    v = load("chunker.json")
    case = next(c for c in v["cases"] if c["name"].startswith("small params, 1 MiB"))
    data = make_vectors.test_stream(1024 * 1024)
    p = case["params"]
    ref = reference_chunks(data, bytes.fromhex(v["chunker_key"]), ChunkerParams(p["min"], p["avg"], p["max"]))
    assert [len(c) for c in ref] == case["lengths"]


def test_read_frozen_key_slots():
    v = load("keys.json")
    mk = bytes.fromhex(v["master_key"])
    host = keys.parse_slot(bytes.fromhex(v["host_slot"]["slot"]))
    assert host.fingerprint == v["host_fingerprint"] and host.repo_id.hex() == v["repo_id"]
    assert keys.open_slot(host, host_key=bytes.fromhex(v["host_key"])) == mk
    assert keys.decode_host_key(v["host_key_file"].encode()) == bytes.fromhex(v["host_key"])
    rec = keys.parse_slot(bytes.fromhex(v["recovery_slot"]["slot"]))
    priv = X25519PrivateKey.from_private_bytes(bytes.fromhex(v["recovery_private"]))
    assert rec.fingerprint == v["recovery_fingerprint"] == keys.recovery_fingerprint(priv)
    assert keys.open_slot(rec, recovery_private=priv) == mk


def test_read_frozen_config_pack_object_tree():
    v = load("repo.json")
    sub = crypto.derive_subkeys(bytes.fromhex(v["master_key"]))
    raw = bytes.fromhex(v["config"]["bytes"])
    cfg, _ = parse_config(raw)
    verify_config(raw, sub.config_mac_key)
    assert cfg.repo_id.hex() == v["config"]["repo_id"] and cfg.chunker == ChunkerParams()

    pack = bytes.fromhex(v["pack"]["bytes"])
    assert v["pack"]["name"].endswith(crypto.sha256_hex(pack))
    dk, entries = read_trailer(pack, sub.kek, "vector pack")
    assert dk.hex() == v["pack"]["dk"]
    got = [decrypt_blob(dk, e, pack[e.offset:e.offset + e.length], sub.id_key, "b") for e in entries]
    assert [g.hex() for g in got] == [b["plaintext"] for b in v["pack"]["blobs"]]
    assert [e.blob_type for e in entries] == [b["type"] for b in v["pack"]["blobs"]]

    obj = bytes.fromhex(v["snapshot_object"]["bytes"])
    assert objects.open_object(obj, objects.OBJ_SNAPSHOT, sub.kek, "s").decode() == v["snapshot_object"]["payload"]

    lines = [ln.encode() for ln in v["tree"]["lines"]]
    entries_back = list(tree.decode_stream([b"".join(lines)]))
    assert entries_back[1]["path"] == b"etc/caf\xe9" and entries_back[2]["target"] == b"../\xff"
    assert [tree.encode_entry(e) for e in entries_back] == lines


def test_read_frozen_crypto():
    v = load("crypto.json")
    b = v["blob"]
    pt = crypto.open_(bytes.fromhex(b["dk"]), crypto.nonce(0, b["n"]), bytes.fromhex(b["ciphertext"]),
                      bytes.fromhex(b["aad"]), "vector blob")
    assert pt.hex() == b["payload"]
    kw = v["key_wrap"]
    assert crypto.unwrap_key(bytes.fromhex(kw["kek"]), bytes.fromhex(kw["wrapped"]), "kw").hex() == kw["key"]
    z = v["zstd"]
    assert compress.decompress(compress.COMP_ZSTD, bytes.fromhex(z["frame"]), z["raw_length"]) == b"a" * 100
