"""Object name validation (base.validate_name): the first line of defence against path traversal."""

from __future__ import annotations

import pytest
from fleetsafe.errors import InvalidObjectName, InvalidRange
from fleetsafe.storage.base import check_range, dir_may_match, validate_name

GOOD = ["config", "keys/abc", "packs/ab/" + "0" * 64, "a-b_c.d", "x/y/z", "a" * 255]
BAD = ["", "../x", "/abs", "a//b", ".hidden", "a/.hidden", "a/../b", "a/./b", "x/", "a\\b", "a b", "a\nb",
       "é", "a" * 256, "a/" * 127 + "bb"]  # fmt: skip


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidObjectName):
        validate_name(name)


def test_non_string() -> None:
    with pytest.raises(InvalidObjectName):
        validate_name(b"config")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "packs/", "packs/a", "config", "snapshots/"])
def test_good_prefixes(prefix: str) -> None:
    assert validate_name(prefix, prefix=True) == prefix


@pytest.mark.parametrize("prefix", ["/", "../", "a//", ".x", "a/../"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidObjectName):
        validate_name(prefix, prefix=True)


def test_ranges() -> None:
    check_range("x", 0, None)
    check_range("x", 5, 0)
    for off, size in ((-1, None), (0, -1)):
        with pytest.raises(InvalidRange):
            check_range("x", off, size)


@pytest.mark.parametrize(
    ("rel_dir", "prefix", "want"),
    [("", "x", True), ("packs", "packs/", True), ("packs", "pa", True), ("packs/ab", "packs/a", True),
     ("packs/ab", "packs/b", False), ("index", "packs/", False), ("packs", "packsx", False)],
)  # fmt: skip
def test_dir_may_match(rel_dir: str, prefix: str, want: bool) -> None:
    assert dir_may_match(rel_dir, prefix) is want
