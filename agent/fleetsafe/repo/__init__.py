"""Repository format v1: packs, index, snapshot manifests, tree streams, locks, check.

The byte formats are specified in docs/format.md; ``Repository`` is the API
the engine uses (docs/architecture.md, "Repository API").
"""

from fleetsafe.repo.repository import Repository

__all__ = ["Repository"]
