"""Storage targets: one small interface (``base.Backend``), one module per backend."""

from fleetsafe.storage.base import Backend, ObjectInfo, validate_name

__all__ = ["Backend", "ObjectInfo", "validate_name"]
