"""``fleetsafe selftest``: known answers and a round trip, in seconds (STYLE 16, ENC-TEST).

Contract: ``run_selftest()`` never raises for a failed check; it returns
``{"status": "ok"|"failed", "checks": [{"name", "ok", "seconds", "error"?}]}``
and the CLI exits 1 when any check failed.  It touches nothing outside a
private temporary directory and needs no configuration, keys or network.

Checks:

* known-answer tests of the primitives the format is built on, through the
  agent's own ``fleetsafe.crypto`` wrappers: SHA-256 (FIPS 180-2 "abc"),
  HKDF-SHA256 (RFC 5869 case 1), AES-256-GCM (GCM spec test case 14), AES
  key wrap (RFC 3394 4.6); a tampered ciphertext must fail to open;
* the repository layer's frozen chunker vectors (``tests/vectors/chunker.json``
  when running from a source tree, else one case embedded here): HKDF of a
  fixed master key, chunk boundaries and keyed blob ids;
* a real round trip: a small tree with a non-UTF-8 name, a symlink, a hard
  link and odd modes -> ``Repository.init`` on a local backend -> full and
  incremental backup -> ``verify --read-data`` -> restore -> byte and
  metadata comparison.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _check(name: str, fn: Callable[[], None], out: list[dict[str, Any]]) -> None:
    t0 = time.monotonic()
    item: dict[str, Any] = {"name": name, "ok": True}
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - a selftest reports every failure, whatever its type
        item["ok"] = False
        item["error"] = f"{type(exc).__name__}: {exc}"
    item["seconds"] = round(time.monotonic() - t0, 3)
    out.append(item)


def _expect(what: str, got: bytes, want_hex: str) -> None:
    if got.hex() != want_hex:
        raise AssertionError(f"{what}: expected {want_hex}, got {got.hex()}")


def kat_primitives() -> None:
    from fleetsafe import crypto
    from fleetsafe.errors import AuthenticationFailed

    _expect("SHA-256", bytes.fromhex(crypto.sha256_hex(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    okm = crypto.hkdf(b"\x0b" * 22, bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), salt=bytes(range(13)), length=42)
    _expect("HKDF-SHA256", okm, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    ct = crypto.seal(bytes(32), bytes(12), bytes(16), b"")
    _expect("AES-256-GCM", ct, "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")
    wrapped = crypto.wrap_key(bytes(range(32)), bytes.fromhex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f"))
    _expect("AES key wrap", wrapped,
            "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21")
    tampered = bytearray(crypto.seal(bytes(32), bytes(12), b"payload", b"aad"))
    tampered[0] ^= 1
    try:
        crypto.open_(bytes(32), bytes(12), bytes(tampered), b"aad", "selftest")
    except AuthenticationFailed:
        pass
    else:
        raise AssertionError("a tampered AES-GCM ciphertext was accepted")


def _vector_files() -> list[Path]:
    here = Path(__file__).resolve().parent
    candidates = [here / "vectors" / "chunker.json", here.parent.parent / "tests" / "vectors" / "chunker.json"]
    return [p for p in candidates if p.is_file()]


_MK = bytes(range(32))
_STREAM_LABEL = b"fleetsafe v1 test stream"
#: Frozen from tests/vectors/chunker.json ("small params, 1 MiB pseudo-random"), so that an
#: installed agent without the source tree still checks chunk boundaries and keyed ids:
#: a change there would silently stop deduplication against existing backups.
_EMBEDDED: dict[str, Any] = {
    "name": "small params, 1 MiB pseudo-random (embedded)",
    "input": 1024 * 1024,
    "input_sha256": "83f767567c97b96d58ab9c81d6ccb82c15176e2be75ee39ce3e5c1c1dd992fa1",
    "params": {"min": 4096, "avg": 16384, "max": 65536},
    "lengths_sha256": "20102608d48486774464d407c84e744a0515ece1a170c3259b7d2df7288e15d7",
    "blob_ids_sha256": "bdeac9bb85ab345d5e2ec94be988b0342f7e192f2577acb62d71fe0dbf87e650",
}
_CHUNKER_KEY = "0ac1b0e216e337a8c9b6752b11430eb4770f89fb173a2973a30b55582bab1a8c"
_ID_KEY = "5bc68303e3979471d219d6129898b5e7b720ab9c6f8a5196f0cf479fef34614c"


def _test_stream(n: int) -> bytes:
    """The vectors' input: SHA-256(label || counter, 8 bytes BE) for counter 0, 1, ..."""
    import hashlib

    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(_STREAM_LABEL + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


def _input_of(desc: str) -> bytes:
    import re

    m = re.fullmatch(r"test_stream\((\d+)\)", desc)
    if m:
        return _test_stream(int(m.group(1)))
    m = re.fullmatch(r"bytes\((\d+)\)", desc)
    if m:
        return bytes(int(m.group(1)))
    if desc in ("b''", 'b""'):
        return b""
    raise ValueError(f"unknown vector input {desc!r}")


def _chunks(key: bytes, params: dict[str, int], data: bytes) -> list[bytes]:
    import io

    from fleetsafe.chunker import Chunker, ChunkerParams

    p = ChunkerParams(params["min"], params["avg"], params["max"])
    return list(Chunker(key, p).chunks(io.BytesIO(data).read))


def kat_chunker() -> None:
    """Chunk boundaries and keyed ids from a fixed master key (derive_subkeys included)."""
    import hashlib

    from fleetsafe import crypto

    sub = crypto.derive_subkeys(_MK)
    _expect("chunker key (HKDF of the vector master key)", sub.chunker_key, _CHUNKER_KEY)
    _expect("id key (HKDF of the vector master key)", sub.id_key, _ID_KEY)
    files = _vector_files()
    if files:
        doc = json.loads(files[0].read_text())
        cases = doc.get("cases") or []
        if not cases:
            raise AssertionError(f"{files[0]}: no cases")
        for case in cases:
            data = _input_of(case["input"])
            if hashlib.sha256(data).hexdigest() != case["input_sha256"]:
                raise AssertionError(f"vector {case['name']}: input differs")
            chunks = _chunks(sub.chunker_key, case["params"], data)
            if [len(c) for c in chunks] != case["lengths"]:
                raise AssertionError(f"vector {case['name']}: chunk boundaries differ")
            if [crypto.blob_id(sub.id_key, c).hex() for c in chunks] != case["blob_ids"]:
                raise AssertionError(f"vector {case['name']}: blob ids differ")
        return
    case = _EMBEDDED
    data = _test_stream(int(case["input"]))
    if hashlib.sha256(data).hexdigest() != case["input_sha256"]:
        raise AssertionError("embedded vector: input differs")
    chunks = _chunks(sub.chunker_key, case["params"], data)
    lengths = hashlib.sha256(json.dumps([len(c) for c in chunks]).encode()).hexdigest()
    ids = hashlib.sha256(json.dumps([crypto.blob_id(sub.id_key, c).hex() for c in chunks]).encode()).hexdigest()
    if lengths != case["lengths_sha256"]:
        raise AssertionError("embedded vector: chunk boundaries differ")
    if ids != case["blob_ids_sha256"]:
        raise AssertionError("embedded vector: blob ids differ")


def _make_tree(root: Path) -> None:
    (root / "etc" / "sub").mkdir(parents=True)
    (root / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")
    big = os.urandom(300_000)
    (root / "etc" / "big.bin").write_bytes(big)
    (root / "etc" / "secret").write_bytes(b"s3cret")
    os.chmod(root / "etc" / "secret", 0o600)
    with open(os.path.join(os.fsencode(root / "etc"), b"caf\xe9"), "wb") as fh:
        fh.write(b"not utf-8 name")
    os.symlink("hosts", root / "etc" / "link")
    os.link(root / "etc" / "hosts", root / "etc" / "sub" / "hosts.hard")
    os.chmod(root / "etc" / "sub", 0o750)


def _compare(src: Path, dst: Path) -> None:
    s_root, d_root = os.fsencode(src), os.fsencode(dst)
    for dirpath, dirnames, filenames in os.walk(s_root):
        rel = os.path.relpath(dirpath, s_root)
        for name in dirnames + filenames:
            a = os.path.join(dirpath, name)
            b = os.path.normpath(os.path.join(d_root, rel, name))
            sa, sb = os.lstat(a), os.lstat(b)
            if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode) or stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
                raise AssertionError(f"{b!r}: type or mode differs")
            if stat.S_ISLNK(sa.st_mode):
                if os.readlink(a) != os.readlink(b):
                    raise AssertionError(f"{b!r}: symlink target differs")
            elif stat.S_ISREG(sa.st_mode):
                with open(a, "rb") as fa, open(b, "rb") as fb:
                    if fa.read() != fb.read():
                        raise AssertionError(f"{b!r}: content differs")
                if sa.st_mtime_ns != sb.st_mtime_ns:
                    raise AssertionError(f"{b!r}: mtime differs")
    h1 = os.lstat(os.path.join(d_root, b"etc/hosts")).st_ino
    h2 = os.lstat(os.path.join(d_root, b"etc/sub/hosts.hard")).st_ino
    if h1 != h2:
        raise AssertionError("hard link not restored as a hard link")


def round_trip() -> None:
    from fleetsafe.backup import BackupRequest, run_backup
    from fleetsafe.repo import Repository
    from fleetsafe.restore import restore_snapshot
    from fleetsafe.storage.local import LocalBackend
    from fleetsafe.verify import run_verify

    with tempfile.TemporaryDirectory(prefix="fleetsafe-selftest-") as tmp:
        base = Path(tmp)
        src = base / "src"
        _make_tree(src)
        backend = LocalBackend(base / "repo")
        repo = Repository.init(backend, host_key=os.urandom(32), recovery_public=None, host="selftest")
        req = BackupRequest(host="selftest", sources=[str(src / "etc")], backup_type="full")
        first = run_backup(repo, req)
        if first.status != "success" or first.errors:
            raise AssertionError(f"full backup: {first.status} {first.errors}")
        (src / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost changed\n")
        req.backup_type = "incremental"
        second = run_backup(repo, req)
        if second.files_reused < 2 or second.parent != first.snapshot_id:
            raise AssertionError(f"incremental did not reuse its parent ({second.files_reused} files reused)")
        check = run_verify(repo, 1.0)
        if check["status"] != "ok":
            raise AssertionError(f"verify: {check['problems'][:3]}")
        out = base / "out"
        restore_snapshot(repo, second.snapshot_id, out)
        rel = str(src).lstrip("/")
        _compare(src, out / rel)


def run_selftest() -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    _check("known answers: SHA-256, HKDF, AES-256-GCM, AES key wrap, tamper", kat_primitives, checks)
    _check("chunker vectors (tests/vectors)" if _vector_files() else "chunker vector (embedded)", kat_chunker, checks)
    _check("backup/verify/restore round trip", round_trip, checks)
    return {"status": "ok" if all(c["ok"] for c in checks) else "failed", "checks": checks}
