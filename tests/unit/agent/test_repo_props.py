"""Property tests (hypothesis) for the repository's round trips and strict parsers."""

from __future__ import annotations

import os
import tempfile

import pytest
from fleetsafe.chunker import ChunkerParams
from fleetsafe.errors import FormatError, IntegrityError
from fleetsafe.repo import Repository, tree
from fleetsafe.repo.config import parse_config
from fleetsafe.repo.index import PackRecord, index_payload, parse_index
from fleetsafe.repo.pack import PackEntry, read_trailer
from fleetsafe.storage.local import LocalBackend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SMALL = ChunkerParams(64, 256, 1024)
HOST_KEY = bytes(range(32))

component = st.binary(min_size=1, max_size=12).filter(lambda b: b not in (b".", b"..") and b"/" not in b
                                                       and b"\0" not in b)
paths = st.lists(component, min_size=1, max_size=4).map(b"/".join)
scalars = st.one_of(st.integers(-(2**63), 2**64), st.text(max_size=10), st.booleans(), st.none())


@st.composite
def entries(draw):
    e = {"path": draw(paths), "type": draw(st.sampled_from(sorted(tree.ENTRY_TYPES)))}
    if draw(st.booleans()):
        e["target"] = draw(st.binary(max_size=20))
    for key in draw(st.lists(st.sampled_from(["mode", "uid", "user", "mtime_ns", "x"]), unique=True)):
        e[key] = draw(scalars)
    if draw(st.booleans()):
        e["content"] = draw(st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex), max_size=3))
    return e


def make_repo() -> Repository:
    return Repository.init(LocalBackend(tempfile.mkdtemp(prefix="fs-prop-")), host_key=HOST_KEY,
                           recovery_public=None, host="p", params=SMALL, pack_size=4096)


@settings(max_examples=100, deadline=None)
@given(st.lists(entries(), max_size=30))
def test_tree_encode_decode_roundtrip(es):
    """Any paths and targets, including non-UTF-8 bytes, come back byte for byte."""
    stream = b"".join(tree.encode_stream(es))
    assert stream.isascii()
    # Decoding must not depend on where the stream is split into blobs.
    cut = len(stream) // 3
    assert list(tree.decode_stream([stream[:cut], stream[cut:]])) == es


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries(), min_size=1, max_size=60))
def test_tree_through_repository(es):
    repo = make_repo()
    ids = repo.write_tree(es)
    assert list(repo.read_tree(ids)) == es
    repo.flush()
    assert list(Repository.open(repo.backend, host_key=HOST_KEY).read_tree(ids)) == es


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["data", "tree"]), st.binary(max_size=3000)), max_size=25))
def test_blob_roundtrip_with_reopen(blobs):
    repo = make_repo()
    ids = [repo.add_blob(kind, data)[0] for kind, data in blobs]
    assert [repo.load_blob(i) for i in ids] == [d for _, d in blobs]
    repo.flush()
    again = Repository.open(repo.backend, host_key=HOST_KEY)
    assert [again.load_blob(i) for i in ids] == [d for _, d in blobs]
    assert again.check(read_data=1.0)["status"] == "ok"
    for info in repo.backend.list("packs/"):
        _, entries_ = read_trailer(repo.backend.load(info.name), repo._kek, info.name)
        assert all(e.blob_id in set(ids) for e in entries_)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**31)), max_size=10))
def test_index_payload_roundtrip(items):
    rec = PackRecord("ab" * 32, 12345, [PackEntry(b, 1, 0, n, o, 16 + n, o) for n, (b, o) in enumerate(items)])
    assert parse_index(index_payload([rec]), "i") == [rec]


@pytest.mark.parametrize("bad", [
    None, [], {"v": 2, "packs": []}, {"v": 1}, {"v": 1, "packs": [{"id": "zz", "size": 1, "blobs": []}]},
    {"v": 1, "packs": [{"id": "ab" * 32, "size": -1, "blobs": []}]},
    {"v": 1, "packs": [{"id": "ab" * 32, "size": 1, "blobs": [["00" * 32, 9, 0, 0, 0, 16, 0]]}]},
    {"v": 1, "packs": [{"id": "ab" * 32, "size": 1, "blobs": [["00" * 32, 1, 0, 0, 0, 16]]}]},
    {"v": 1, "packs": [{"id": "ab" * 32, "size": 1, "blobs": [["00" * 32, 1, 0, True, 0, 16, 0]]}]},
])
def test_index_parser_is_strict(bad):
    with pytest.raises(FormatError):
        parse_index(bad, "i")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parsers_never_crash_on_garbage(data):
    """Garbage gives our errors, never an IndexError/struct.error/KeyError from deep inside."""
    from fleetsafe import keys
    from fleetsafe.repo import objects

    for fn in (lambda: parse_config(data), lambda: keys.parse_slot(data),
               lambda: read_trailer(data, os.urandom(32), "p"),
               lambda: objects.open_object(data, objects.OBJ_INDEX, os.urandom(32), "o"),
               lambda: tree.decode_entry(data)):
        try:
            fn()
        except IntegrityError:
            pass
