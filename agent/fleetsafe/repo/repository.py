"""``Repository``: format v1 on top of one storage ``Backend`` (docs/architecture.md).

Object names in the backend::

    config                          plaintext, MAC-authenticated (repo.config)
    keys/<fingerprint>              key slots wrapping the master key (keys)
    packs/<2 hex>/<sha256 hex>      packs of encrypted blobs (repo.pack)
    index/<sha256 hex>              sealed index objects (repo.index, repo.objects)
    snapshots/<sha256 hex>          sealed snapshot manifests; the id is the hex
    locks/<random hex>              plaintext lock objects (repo.lock)

Write ordering is the crash-safety invariant: a pack is stored before any
index object names it, and ``save_snapshot`` flushes packs and the index
before it stores the manifest.  A ``kill -9`` at any point therefore leaves
at worst packs no index names (``check`` reports them as a note); the next
run simply stores those blobs again.  ``config`` is written last by ``init``,
so a half-initialised repository is "not found" and can be initialised again.

Not thread-safe: one ``Repository`` per thread of work.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fleetsafe import compress, crypto, keys
from fleetsafe.chunker import Chunker, ChunkerParams
from fleetsafe.errors import (
    AmbiguousSnapshotId,
    BlobNotFound,
    FleetsafeError,
    FormatError,
    IntegrityError,
    NoMatchingKeySlot,
    ObjectNotFound,
    RepositoryExists,
    RepositoryNotFound,
    SnapshotNotFound,
    UsageError,
)
from fleetsafe.repo import objects
from fleetsafe.repo.config import (
    CONFIG_NAME,
    PACK_TARGET_SIZE,
    RepoConfig,
    parse_config,
    verify_config,
)
from fleetsafe.repo.index import Index, PackRecord, index_payload, parse_index
from fleetsafe.repo.lock import RepoLock
from fleetsafe.repo.pack import (
    BLOB_TYPE_IDS,
    HEADER,
    MAX_BLOBS,
    PackWriter,
    decrypt_blob,
    pack_name,
    parse_header,
    read_trailer,
)
from fleetsafe.repo.tree import IterReader, decode_stream, encode_stream
from fleetsafe.storage.base import Backend

if TYPE_CHECKING:  # typing.Self is 3.11+; the agent still runs on 3.9 hosts
    from typing import Self

log = logging.getLogger(__name__)

KEYS_PREFIX = "keys/"
INDEX_PREFIX = "index/"
SNAPSHOT_PREFIX = "snapshots/"
QUARANTINE_PREFIX = "quarantine/"
#: Write an index object at least every this many packs, so a crash loses
#: the index of at most ~1 GiB of uploaded packs (they are re-uploaded).
INDEX_EVERY_PACKS = 64
#: Pack data keys kept unwrapped in memory for reads.
DK_CACHE_SIZE = 1024
MANIFEST_VERSION = 1


def _norm_id(blob_id: bytes | str) -> bytes:
    """Blob ids are 32 bytes; accept their 64-hex form too."""
    if isinstance(blob_id, str):
        try:
            b = bytes.fromhex(blob_id)
        except ValueError as exc:
            raise FormatError(what="blob id", expected="64 hex characters", got=repr(blob_id)[:80]) from exc
    else:
        b = bytes(blob_id)
    if len(b) != crypto.ID_SIZE:
        raise FormatError(what="blob id", expected=f"{crypto.ID_SIZE} bytes", got=f"{len(b)} bytes")
    return b


def _name_hash(name: str) -> str:
    return name.rsplit("/", 1)[-1]


class Repository:
    """An unlocked repository.  Create with ``Repository.init`` or ``Repository.open``."""

    def __init__(self, backend: Backend, config: RepoConfig, master_key: bytes, *, host: str | None = None,
                 random: crypto.Random = os.urandom) -> None:
        self.backend = backend
        self.config = config
        self.id: str = config.repo_id.hex()
        self.host = host or socket.gethostname()
        self._random = random
        self._keys = crypto.derive_subkeys(master_key)
        self._master_key = master_key
        self._chunker = Chunker(self._keys.chunker_key, config.chunker)
        self.index = Index()
        #: problems met while loading index objects (named; ``check`` reports them too)
        self.load_problems: list[dict[str, str]] = []
        self._writers: dict[int, PackWriter] = {}
        self._unindexed: list[PackRecord] = []
        self._dk_cache: OrderedDict[str, bytes] = OrderedDict()
        self._locks: list[RepoLock] = []
        #: what this session wrote (for the backup result: packs_added, bytes_stored ...)
        self.written: dict[str, int] = {"packs": 0, "bytes": 0, "blobs": 0, "raw_bytes": 0, "index_objects": 0}
        self._load_index()

    def __repr__(self) -> str:
        return f"Repository({self.id} on {self.backend.location})"

    # -- creation ---------------------------------------------------------------------
    @classmethod
    def init(cls, backend: Backend, *, host_key: bytes, recovery_public: bytes | None, host: str,
             params: ChunkerParams | None = None, pack_size: int = PACK_TARGET_SIZE,
             random: crypto.Random = os.urandom, created: int | None = None) -> Repository:
        """Create a repository with a host slot and, if given, a recovery slot (``RepositoryExists`` if present).

        ``recovery_public`` is the organisation's X25519 public key, raw 32 bytes or PEM.
        """
        if backend.exists(CONFIG_NAME):
            raise RepositoryExists(location=backend.location)
        for prefix in ("packs/", INDEX_PREFIX, SNAPSHOT_PREFIX):
            if backend.list(prefix):
                # Data without a config: a damaged repository, never something to initialise over.
                raise RepositoryExists(location=f"{backend.location} (has {prefix} objects but no config)")
        for stale in backend.list(KEYS_PREFIX):
            # Slots of an interrupted init (no config, no data was ever written
            # with their master key): remove them so they cannot be mistaken
            # for slots of the new repository.
            backend.delete(stale.name)
        created = int(time.time()) if created is None else created
        master_key = random(crypto.KEY_SIZE)
        repo_id = random(keys.REPO_ID_SIZE)
        config = RepoConfig(repo_id=repo_id, created=created, chunker=params or ChunkerParams(), pack_size=pack_size)
        sub = crypto.derive_subkeys(master_key)
        # Slots first, config last: without config the repository does not exist yet.
        fp, slot = keys.make_host_slot(master_key, host_key, repo_id, created=created, random=random)
        backend.store(KEYS_PREFIX + fp, slot)
        if recovery_public is not None:
            rfp, rslot = keys.make_recovery_slot(
                master_key, keys.parse_recovery_public(recovery_public), repo_id, created=created, random=random,
            )
            backend.store(KEYS_PREFIX + rfp, rslot)
        backend.store(CONFIG_NAME, config.serialize(sub.config_mac_key))
        return cls(backend, config, master_key, host=host, random=random)

    @classmethod
    def open(cls, backend: Backend, *, host_key: bytes | None = None,
             recovery_private: X25519PrivateKey | None = None, host: str | None = None) -> Repository:
        """Unlock with the host key or the recovery private key.

        ``RepositoryNotFound`` without a config; ``NoMatchingKeySlot`` when no
        slot belongs to the given key(s); ``AuthenticationFailed`` when the
        matching slot or the config was tampered with.
        """
        try:
            raw = backend.load(CONFIG_NAME)
        except ObjectNotFound:
            raise RepositoryNotFound(location=backend.location) from None
        config, _mac = parse_config(raw)
        candidates: list[tuple[str, dict[str, Any]]] = []
        if host_key is not None:
            candidates.append((keys.host_fingerprint(host_key), {"host_key": host_key}))
        if recovery_private is not None:
            candidates.append((keys.recovery_fingerprint(recovery_private), {"recovery_private": recovery_private}))
        if not candidates:
            raise NoMatchingKeySlot(repo=config.repo_id.hex(), fingerprint="(no key given)")
        for fp, kwargs in candidates:
            # A slot is named by the fingerprint of the key that opens it: no search, no trial decryption.
            try:
                data = backend.load(KEYS_PREFIX + fp)
            except ObjectNotFound:
                continue
            slot = keys.parse_slot(data, f"key slot {fp}")
            if slot.fingerprint != fp:
                raise FormatError(what=f"key slot {fp}", expected=f"fingerprint {fp}", got=slot.fingerprint)
            if slot.repo_id != config.repo_id:
                raise FormatError(what=f"key slot {fp}", expected=f"repository {config.repo_id.hex()}",
                                  got=f"repository {slot.repo_id.hex()}")
            master_key = keys.open_slot(slot, **kwargs)
            verify_config(raw, crypto.derive_subkeys(master_key).config_mac_key)
            return cls(backend, config, master_key, host=host)
        raise NoMatchingKeySlot(repo=config.repo_id.hex(), fingerprint=", ".join(fp for fp, _ in candidates))

    # -- key slots -----------------------------------------------------------------------
    def slots(self) -> list[dict[str, Any]]:
        """Every key slot: ``{"type", "fingerprint", "created", "algorithm"}`` (no secrets)."""
        out = []
        for info in self.backend.list(KEYS_PREFIX):
            slot = keys.parse_slot(self.backend.load(info.name), info.name)
            out.append(slot.describe())
        return out

    def add_host_slot(self, host_key: bytes) -> str:
        """Let another host key open this repository; returns its fingerprint (idempotent)."""
        fp, slot = keys.make_host_slot(self._master_key, host_key, self.config.repo_id, random=self._random)
        if not self.backend.exists(KEYS_PREFIX + fp):
            self.backend.store(KEYS_PREFIX + fp, slot)
        return fp

    def add_recovery_slot(self, recovery_public: bytes) -> str:
        """Add a recovery slot for an X25519 public key (raw or PEM); returns its fingerprint (idempotent)."""
        fp, slot = keys.make_recovery_slot(
            self._master_key, keys.parse_recovery_public(recovery_public), self.config.repo_id, random=self._random,
        )
        if not self.backend.exists(KEYS_PREFIX + fp):
            self.backend.store(KEYS_PREFIX + fp, slot)
        return fp

    def remove_slot(self, fingerprint: str) -> None:
        """Remove a key slot; refuses to remove the last one (the data would be lost)."""
        names = [i.name for i in self.backend.list(KEYS_PREFIX)]
        name = KEYS_PREFIX + fingerprint
        if name not in names:
            raise ObjectNotFound(name=name, backend=self.backend.location)
        if len(names) == 1:
            raise UsageError(f"refusing to remove the last key slot {fingerprint} of repository {self.id}")
        self.backend.delete(name)

    # -- chunks and blobs ------------------------------------------------------------------
    @property
    def chunker_params(self) -> ChunkerParams:
        return self.config.chunker

    def chunk(self, stream: BinaryIO) -> Iterator[bytes]:
        """Keyed FastCDC chunks of ``stream`` (read to its end)."""
        return self._chunker.chunks(stream.read)

    def blob_id(self, data: bytes) -> bytes:
        """Keyed BLAKE2b-256 of ``data`` (32 bytes)."""
        return crypto.blob_id(self._keys.id_key, data)

    def has_blob(self, blob_id: bytes | str) -> bool:
        bid = _norm_id(blob_id)
        self._refresh_locks()
        return bid in self.index or any(bid in w.by_id for w in self._writers.values())

    def add_blob(self, kind: str, data: bytes, blob_id: bytes | str | None = None) -> tuple[bytes, bool]:
        """Store ``data`` as a ``data`` or ``tree`` blob unless present; returns ``(id, was_new)``.

        ``blob_id``, when given, must be ``self.blob_id(data)`` (saves hashing
        twice); ``load_blob`` re-checks it, so a wrong one cannot go unnoticed.
        """
        try:
            btype = BLOB_TYPE_IDS[kind]
        except KeyError:
            raise ValueError(f"blob kind must be one of {sorted(BLOB_TYPE_IDS)}, not {kind!r}") from None
        bid = self.blob_id(data) if blob_id is None else _norm_id(blob_id)
        if self.has_blob(bid):
            return bid, False
        comp, payload = compress.compress(data, self.config.compression)
        writer = self._writers.get(btype)
        if writer is None:
            writer = self._writers[btype] = PackWriter(self._keys.kek, random=self._random)
        writer.add(bid, btype, comp, payload, len(data))
        self.written["blobs"] += 1
        self.written["raw_bytes"] += len(data)
        if len(writer) >= self.config.pack_size or writer.count >= MAX_BLOBS:
            self._seal(btype)
        return bid, True

    def load_blob(self, blob_id: bytes | str) -> bytes:
        """The plaintext of a blob, authenticated and checked against its id.

        ``BlobNotFound`` if no index (and no open pack) has it;
        ``AuthenticationFailed`` / ``IntegrityError`` naming the pack if damaged.
        """
        bid = _norm_id(blob_id)
        for w in self._writers.values():
            entry = w.by_id.get(bid)
            if entry is not None:
                return decrypt_blob(w.dk, entry, w.read(entry), self._keys.id_key, f"blob {bid.hex()} (unsealed pack)")
        ie = self.index.get(bid)
        if ie is None:
            raise BlobNotFound(blob=bid.hex(), repo=self.id)
        name = pack_name(ie.pack)
        dk = self._pack_dk(ie.pack)
        ct = self.backend.load(name, ie.entry.offset, ie.entry.length)
        return decrypt_blob(dk, ie.entry, ct, self._keys.id_key, f"blob {bid.hex()} in {name}")

    def _pack_dk(self, pack: str) -> bytes:
        dk = self._dk_cache.get(pack)
        if dk is not None:
            self._dk_cache.move_to_end(pack)
            return dk
        name = pack_name(pack)
        wrapped = parse_header(self.backend.load(name, 0, HEADER.size), name)
        dk = crypto.unwrap_key(self._keys.kek, wrapped, f"{name} data key")
        self._dk_cache[pack] = dk
        if len(self._dk_cache) > DK_CACHE_SIZE:
            self._dk_cache.popitem(last=False)
        return dk

    # -- packs and index ------------------------------------------------------------------
    def _seal(self, btype: int) -> None:
        writer = self._writers[btype]
        data = writer.finish()
        sha = crypto.sha256_hex(data)
        self.backend.store(pack_name(sha), data)
        # Only after the store succeeded: on failure the blobs stay in the open pack.
        del self._writers[btype]
        record = PackRecord(sha, len(data), list(writer.entries))
        self.index.add_pack(record)
        self._unindexed.append(record)
        self._dk_cache[sha] = writer.dk
        self.written["packs"] += 1
        self.written["bytes"] += len(data)
        self._refresh_locks()
        if len(self._unindexed) >= INDEX_EVERY_PACKS:
            self._write_index()

    def _write_index(self) -> None:
        if not self._unindexed:
            return
        payload = objects.canonical_json(index_payload(self._unindexed))
        data = objects.seal_object(objects.OBJ_INDEX, payload, self._keys.kek, random=self._random)
        self.backend.store(INDEX_PREFIX + crypto.sha256_hex(data), data)
        self._unindexed = []
        self.written["index_objects"] += 1
        self.written["bytes"] += len(data)

    def flush(self) -> None:
        """Seal and store every open pack, then store an index object naming them."""
        for btype in sorted(self._writers):
            self._seal(btype)
        self._write_index()

    def _load_index(self) -> None:
        for info in self.backend.list(INDEX_PREFIX):
            try:
                for record in self.read_index_object(info.name):
                    self.index.add_pack(record)
            except FleetsafeError as exc:
                # A damaged index only makes its blobs look absent: they are
                # stored again, and ``check`` names the object.
                log.warning("skipping index object %s: %s", info.name, exc)
                self.load_problems.append({"object": info.name, "problem": str(exc)})

    def read_index_object(self, name: str) -> list[PackRecord]:
        """Load, verify (name = SHA-256 of bytes), decrypt and parse one index object."""
        data = self.backend.load(name)
        if crypto.sha256_hex(data) != _name_hash(name):
            raise IntegrityError(f"{name}: SHA-256 of the object does not match its name")
        return parse_index(objects.open_json(data, objects.OBJ_INDEX, self._keys.kek, name), name)

    def compact_index(self) -> int:
        """Replace every readable index object by one; returns how many were replaced.

        Order keeps the invariant: the combined object is stored before any
        old one is deleted, and only objects that were read are deleted (an
        index written meanwhile by another run survives).  Damaged index
        objects are left alone for ``check`` to name.  Call under an
        exclusive lock.
        """
        self.flush()
        names: list[str] = []
        records: list[PackRecord] = []
        for info in self.backend.list(INDEX_PREFIX):
            try:
                records.extend(self.read_index_object(info.name))
            except FleetsafeError:
                continue
            names.append(info.name)
        if len(names) < 2:
            return 0
        merged: dict[str, PackRecord] = {}
        for r in records:
            merged.setdefault(r.pack, r)
        self._unindexed = list(merged.values())
        self._write_index()
        new_names = {i.name for i in self.backend.list(INDEX_PREFIX)} - set(names)
        for name in names:
            if name not in new_names:
                self.backend.delete(name)
        return len(names)

    def rebuild_index(self) -> dict[str, Any]:
        """Index the packs no index names (left by an interrupted run) from their trailers.

        Each such pack is hashed (name check) and its trailer authenticated
        before its blobs are trusted; damaged ones are skipped and reported.
        Returns ``{"packs_added", "blobs_added", "problems": [{"object", "problem"}]}``.
        """
        self.flush()
        added: list[PackRecord] = []
        problems: list[dict[str, str]] = []
        before = len(self.index)
        for info in self.backend.list("packs/"):
            sha = _name_hash(info.name)
            if sha in self.index.packs or info.name != pack_name(sha):
                continue
            try:
                data = self.backend.load(info.name)
                if crypto.sha256_hex(data) != sha:
                    raise IntegrityError(f"{info.name}: SHA-256 of the pack does not match its name")
                dk, entries = read_trailer(data, self._keys.kek, info.name)
            except FleetsafeError as exc:
                problems.append({"object": info.name, "problem": str(exc)})
                continue
            record = PackRecord(sha, len(data), entries)
            self.index.add_pack(record)
            self._dk_cache[sha] = dk
            added.append(record)
        if added:
            self._unindexed.extend(added)
            self._write_index()
        return {"packs_added": len(added), "blobs_added": len(self.index) - before, "problems": problems}

    def forget_missing_packs(self) -> int:
        """Drop in-memory index entries whose pack is not stored; returns how many packs were dropped.

        A ``full`` backup calls this so a blob whose pack vanished (deleted,
        quarantined by another run) is stored again instead of being trusted.
        """
        stored = {_name_hash(i.name) for i in self.backend.list("packs/")}
        gone = [sha for sha in self.index.packs if sha not in stored]
        if gone:
            self.drop_packs_in_memory(set(gone))
        return len(gone)

    def drop_packs_in_memory(self, packs: set[str]) -> None:
        """Reload the in-memory index from the index objects, leaving out ``packs``
        (so a blob with a copy in another pack keeps that copy)."""
        self.index = Index()
        self.load_problems = []
        for info in self.backend.list(INDEX_PREFIX):
            try:
                recs = self.read_index_object(info.name)
            except FleetsafeError as exc:
                self.load_problems.append({"object": info.name, "problem": str(exc)})
                continue
            for record in recs:
                if record.pack not in packs:
                    self.index.add_pack(record)
        for sha in packs:
            self._dk_cache.pop(sha, None)

    def quarantine_packs(self, shas: Iterable[str]) -> dict[str, Any]:
        """Move damaged packs to ``quarantine/<sha>`` and write an index without them.

        Order keeps the crash-safety invariant (no index names a missing pack
        for longer than the repair runs): copy to ``quarantine/`` (evidence),
        store one fresh index object without the packs' entries, delete the old
        index objects it replaces, then delete the packs.  Call under an
        exclusive lock.  Returns ``{"quarantined": [names], "index_objects_replaced": n}``.
        """
        self.flush()
        bad = set(shas)
        quarantined: list[str] = []
        for sha in sorted(bad):
            name = pack_name(sha)
            qname = QUARANTINE_PREFIX + sha
            try:
                data = self.backend.load(name)
            except ObjectNotFound:
                data = None
            if data is not None and not self.backend.exists(qname):
                self.backend.store(qname, data)
            quarantined.append(name)
        names: list[str] = []
        records: list[PackRecord] = []
        for info in self.backend.list(INDEX_PREFIX):
            try:
                recs = self.read_index_object(info.name)
            except FleetsafeError:
                continue
            if any(r.pack in bad for r in recs):
                names.append(info.name)
                records.extend(r for r in recs if r.pack not in bad)
        if names:
            merged: dict[str, PackRecord] = {}
            for r in records:
                merged.setdefault(r.pack, r)
            self._unindexed = list(merged.values())
            if self._unindexed:
                self._write_index()
            new_names = {i.name for i in self.backend.list(INDEX_PREFIX)} - set(names)
            for name in names:
                if name not in new_names:
                    self.backend.delete(name)
        for name in quarantined:
            try:
                self.backend.delete(name)
            except ObjectNotFound:
                pass
        self.drop_packs_in_memory(bad)
        return {"quarantined": quarantined, "index_objects_replaced": len(names)}

    def incomplete_snapshots(self) -> list[dict[str, Any]]:
        """Snapshots naming a tree or content blob that no index holds: ``[{"id", "missing_blobs"}]``."""
        out: list[dict[str, Any]] = []
        for m in self.list_snapshots():
            trees = [t for t in m.get("tree") or [] if isinstance(t, str)]
            missing = sum(1 for t in trees if _norm_id(t) not in self.index)
            if not missing:
                try:
                    for e in self.read_tree(trees):
                        missing += sum(1 for c in e.get("content") or () if bytes.fromhex(c) not in self.index)
                except FleetsafeError:
                    missing += 1
            if missing:
                out.append({"id": m["id"], "start": m.get("start"), "missing_blobs": missing})
        return out

    # -- trees -------------------------------------------------------------------------------
    def write_tree(self, entries: Iterable[dict[str, Any]]) -> list[str]:
        """Serialise a tree stream, chunk it, store the chunks as tree blobs; returns their hex ids."""
        reader = IterReader(encode_stream(entries))
        ids: list[str] = []
        for chunk in self._chunker.chunks(reader.read):
            bid, _new = self.add_blob("tree", chunk)
            ids.append(bid.hex())
        return ids

    def read_tree(self, tree_ids: list[str]) -> Iterator[dict[str, Any]]:
        """The entries of a tree stream, in order (``path`` and ``target`` as bytes)."""
        return decode_stream(self.load_blob(t) for t in tree_ids)

    # -- snapshots -----------------------------------------------------------------------
    def save_snapshot(self, manifest: dict[str, Any]) -> str:
        """Flush, then store the manifest; returns the snapshot id (SHA-256 hex of the object).

        Every tree blob the manifest names must be stored already.
        """
        if not isinstance(manifest, dict) or not isinstance(manifest.get("tree"), list):
            raise FormatError(what="snapshot manifest", expected="a dict with a 'tree' list", got=type(manifest).__name__)
        body = dict(manifest)
        body.pop("id", None)
        body.setdefault("version", MANIFEST_VERSION)
        self.flush()
        for t in body["tree"]:
            if _norm_id(t) not in self.index:
                raise BlobNotFound(blob=str(t), repo=self.id)
        data = objects.seal_object(objects.OBJ_SNAPSHOT, objects.canonical_json(body), self._keys.kek,
                                   random=self._random)
        sid = crypto.sha256_hex(data)
        self.backend.store(SNAPSHOT_PREFIX + sid, data)
        self.written["bytes"] += len(data)
        return sid

    def _read_snapshot(self, name: str) -> dict[str, Any]:
        data = self.backend.load(name)
        sid = _name_hash(name)
        if crypto.sha256_hex(data) != sid:
            raise IntegrityError(f"{name}: SHA-256 of the object does not match its name")
        manifest = objects.open_json(data, objects.OBJ_SNAPSHOT, self._keys.kek, name)
        if not isinstance(manifest, dict):
            raise FormatError(what=name, expected="a JSON object", got=type(manifest).__name__)
        manifest["id"] = sid
        return manifest

    def snapshot_ids(self) -> list[str]:
        return [_name_hash(i.name) for i in self.backend.list(SNAPSHOT_PREFIX)]

    def list_snapshots(self) -> list[dict[str, Any]]:
        """Every readable manifest with its ``id``, oldest first (by ``start``, then id).

        A damaged manifest is skipped with a warning (``check`` names it).
        """
        out = []
        for info in self.backend.list(SNAPSHOT_PREFIX):
            try:
                out.append(self._read_snapshot(info.name))
            except FleetsafeError as exc:
                log.warning("skipping snapshot %s: %s", info.name, exc)
        out.sort(key=lambda m: (str(m.get("start", "")), m["id"]))
        return out

    def load_snapshot(self, prefix: str) -> dict[str, Any]:
        """The manifest whose id starts with ``prefix`` (unique); ``SnapshotNotFound`` / ``AmbiguousSnapshotId``."""
        p = prefix.lower()
        if not p or any(c not in "0123456789abcdef" for c in p):
            raise SnapshotNotFound(snapshot=prefix)
        matches = [s for s in self.snapshot_ids() if s.startswith(p)]
        if not matches:
            raise SnapshotNotFound(snapshot=prefix)
        if len(matches) > 1:
            raise AmbiguousSnapshotId(snapshot=prefix, count=len(matches))
        return self._read_snapshot(SNAPSHOT_PREFIX + matches[0])

    def forget_snapshot(self, snapshot_id: str) -> None:
        """Delete one snapshot manifest (its data stays until a prune repacks)."""
        self.backend.delete(SNAPSHOT_PREFIX + self.load_snapshot(snapshot_id)["id"])

    # -- locks, check, stats --------------------------------------------------------------
    def lock(self, exclusive: bool = True) -> RepoLock:
        """A context manager holding the repository lock; ``LockedError`` names the holder."""
        lk = RepoLock(self.backend, host=self.host, exclusive=exclusive)
        self._locks = [x for x in self._locks if x.held] + [lk]
        return lk

    def _refresh_locks(self) -> None:
        for lk in self._locks:
            lk.maybe_refresh()

    def check(self, read_data: float = 0.0, on_problem: Any = None) -> dict[str, Any]:
        """Structural and (a fraction ``read_data`` of) read-data check; see ``repo.check``."""
        from fleetsafe.repo.check import run_check

        return run_check(self, read_data=read_data, on_problem=on_problem)

    def stats(self) -> dict[str, int]:
        """``{"packs", "bytes", "blobs", "snapshots", "index_objects"}`` of the stored repository."""
        packs = self.backend.list("packs/")
        return {
            "packs": len(packs),
            "bytes": sum(p.size for p in packs),
            "blobs": len(self.index),
            "snapshots": len(self.backend.list(SNAPSHOT_PREFIX)),
            "index_objects": len(self.backend.list(INDEX_PREFIX)),
        }

    # id/kek accessors used by repo.check (same package)
    @property
    def _kek(self) -> bytes:
        return self._keys.kek

    @property
    def _id_key(self) -> bytes:
        return self._keys.id_key

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # Flush only on success: after an error the caller decides (a
        # half-written snapshot must not look complete; packs are harmless).
        if exc_type is None:
            self.flush()
