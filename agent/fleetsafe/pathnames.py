"""Byte paths and how they are shown.

File names on Linux are bytes, not text.  The engine keeps every path as
``bytes`` end to end (walk, tree entries, restore) so a name that is not valid
UTF-8 round-trips byte for byte.  Only when a path has to appear in JSON, the
audit log or a message is it turned into text, by ``display_path``: valid
UTF-8 stays as is, any other byte becomes ``\\xNN`` -- readable, and never a
lone surrogate that would make ``json.dumps(..., ensure_ascii=False)`` fail
to encode.

Imports nothing from the package.
"""

from __future__ import annotations

import os
from typing import Union

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def to_bytes(path: PathLike) -> bytes:
    """The OS-level bytes of ``path`` (``os.fsencode`` keeps surrogate-escaped bytes)."""
    return os.fsencode(path)


def display_path(path: PathLike) -> str:
    """Text for people and JSON; invalid UTF-8 bytes shown as ``\\xNN``."""
    return to_bytes(path).decode("utf-8", "backslashreplace")
