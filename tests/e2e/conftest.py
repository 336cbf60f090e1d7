"""The end-to-end test shares the ansible harness with tests/integration/ansible."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "ansible"))
