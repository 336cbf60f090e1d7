"""replicate(): order, verification of content-addressed objects, catch-up after a failed run."""

from __future__ import annotations

from pathlib import Path

import pytest
from fleetsafe.errors import BackendConnectionError
from fleetsafe.replicate import expected_sha256, replicate
from fleetsafe.storage.base import Backend, ObjectInfo
from fleetsafe.storage.local import LocalBackend
from fleetsafe.storage.wrappers import FaultyBackend, RetryingBackend
from services import make_repo


class Recording(FaultyBackend):
    """Records the order of stores."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.order: list[str] = []

    def store(self, name: str, data: bytes) -> None:
        super().store(name, data)
        self.order.append(name)


@pytest.fixture
def src(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "src")


@pytest.fixture
def dst(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "dst")


def _names(b: Backend) -> set[str]:
    return {o.name for o in b.list("")}


def test_copies_everything_in_order(src: LocalBackend, dst: LocalBackend) -> None:
    objs = make_repo(src)
    rec = Recording(dst)
    # The caller's order is not trusted: snapshots still go last.
    result = replicate(src, rec, ("snapshots/", "index/", "packs/", "config", "keys/"))
    assert result["ok"] and result["copied"] == len(objs)
    assert result["bytes"] == sum(map(len, objs.values()))
    assert _names(dst) == set(objs)  # no locks/
    ranks = ["keys/" if n.startswith("keys/") else n.split("/")[0] for n in rec.order]
    first_pack = ranks.index("packs")
    assert set(ranks[:first_pack]) == {"keys/", "config"}
    assert ranks[-1] == "snapshots" and ranks.index("index") > ranks.index("packs")
    assert result["by_prefix"]["packs/"]["copied"] == 3


def test_second_run_copies_nothing(src: LocalBackend, dst: LocalBackend) -> None:
    objs = make_repo(src)
    replicate(src, dst)
    again = replicate(src, dst)
    assert again["copied"] == 0 and again["present"] == len(objs) and again["ok"]


def test_corrupt_source_pack_is_not_spread(src: LocalBackend, dst: LocalBackend) -> None:
    objs = make_repo(src)
    bad = min(n for n in objs if n.startswith("packs/"))
    path = src.root / bad
    path.write_bytes(b"\x00" + path.read_bytes()[1:])  # bit rot on the primary
    result = replicate(src, dst)
    assert result["corrupt"] == [bad] and not result["ok"]
    assert not dst.exists(bad)
    # Nothing that could reference the missing pack reaches the replica.
    assert dst.list("index/") == [] and dst.list("snapshots/") == []
    assert result["held"] == 2
    # After the primary is repaired, the next run catches up.
    src.store(bad, objs[bad])
    fixed = replicate(src, dst)
    assert fixed["ok"] and _names(dst) == set(objs)


def test_damaged_replica_copy_is_repaired(src: LocalBackend, dst: LocalBackend) -> None:
    objs = make_repo(src)
    replicate(src, dst)
    pack = min(n for n in objs if n.startswith("packs/"))
    (dst.root / pack).write_bytes(b"trunc")
    result = replicate(src, dst)
    assert result["repaired"] == [pack] and dst.load(pack) == objs[pack]


def test_config_conflict_is_reported_not_overwritten(src: LocalBackend, dst: LocalBackend) -> None:
    make_repo(src)
    dst.store("config", b"another repository's config")
    result = replicate(src, dst)
    assert result["conflicts"] == ["config"] and not result["ok"]
    assert dst.load("config") == b"another repository's config"


def test_revoked_key_slots_are_reported(src: LocalBackend, dst: LocalBackend) -> None:
    make_repo(src)
    replicate(src, dst)
    src.delete("keys/host-fpr")  # rotated away on the primary
    result = replicate(src, dst)
    assert result["dst_only_keys"] == ["keys/host-fpr"]
    assert dst.exists("keys/host-fpr")  # replicate never deletes


def test_target_down_then_catch_up(src: LocalBackend, dst: LocalBackend) -> None:
    objs = make_repo(src, packs=6)
    # The target goes away after the 5th object: the retries give up.
    faulty = FaultyBackend(dst, fail_store_at=range(6, 100))
    flaky_dst = RetryingBackend(faulty, attempts=3, backoff=0.0, sleep=lambda s: None)
    with pytest.raises(BackendConnectionError) as exc:
        replicate(src, flaky_dst)
    progress = exc.value.details["progress"]
    assert progress["copied"] == 5 and not progress["ok"]
    assert len(_names(dst)) == 5
    assert dst.list("snapshots/") == []  # snapshots are last: never ahead of their packs
    # Next run: the target is back; exactly the rest is copied.
    faulty.fail_store_at.clear()
    result = replicate(src, flaky_dst)
    assert result["ok"] and result["copied"] == len(objs) - 5 and result["present"] == 5
    assert _names(dst) == set(objs)


def test_source_object_vanishing_is_skipped(src: LocalBackend, dst: LocalBackend) -> None:
    objs = make_repo(src)

    class Pruning(FaultyBackend):
        def list(self, prefix: str = "") -> list[ObjectInfo]:
            out = super().list(prefix)
            if prefix == "packs/":
                self.inner.delete(out[0].name)  # pruned between list and load
            return out

    result = replicate(Pruning(src), dst)
    assert len(result["vanished"]) == 1 and result["copied"] == len(objs) - 1


def test_truncated_source_read_is_corrupt(src: LocalBackend, dst: LocalBackend) -> None:
    make_repo(src)
    result = replicate(FaultyBackend(src, truncate_load=1, corrupt_prefix="packs/"), dst)
    assert len(result["corrupt"]) == 3 and dst.list("packs/") == []


def test_expected_sha256() -> None:
    h = "ab" * 32
    assert expected_sha256(f"packs/ab/{h}") == h
    assert expected_sha256(f"snapshots/{h}") == h
    assert expected_sha256("config") is None
    assert expected_sha256(f"keys/{h}") is None  # key slots are named by fingerprint, not content
    assert expected_sha256("packs/ab/notahash") is None


def test_on_copy_callback(src: LocalBackend, dst: LocalBackend) -> None:
    objs = make_repo(src)
    seen: list[tuple[str, int]] = []
    replicate(src, dst, on_copy=lambda n, s: seen.append((n, s)))
    assert sorted(seen) == sorted((n, len(d)) for n, d in objs.items())
