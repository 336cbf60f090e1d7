"""The agent's layers import only downwards (STYLE 8, docs/architecture.md).

Each module of agent/fleetsafe is given a layer below; a module may import
from its own layer's package (``repo.*`` among themselves, ``storage.*``
among themselves) and from lower layers, never from a higher one.  A new
module must be placed here, so the architecture page and the code cannot
drift apart silently.
"""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parents[3] / "agent" / "fleetsafe"

# lowest first; a module name is relative to the fleetsafe package
LAYERS: list[set[str]] = [
    {"errors", "pathnames", "progress", "__init__"},
    {"chunker", "crypto", "compress", "config", "audit", "hooks", "fsread"},
    {"keys"},
    {"storage.base"},
    {"storage.local", "storage.sftp", "storage.s3", "storage.wrappers", "storage.conformance", "storage.__init__"},
    {"storage.url", "replicate"},
    {"repo.config", "repo.tree", "repo.pack", "repo.index", "repo.objects", "repo.lock", "repo.check",
     "repo.repository", "repo.__init__"},
    {"backup", "restore"},
    {"verify", "sample", "runtime"},
    {"selftest"},
    {"commands"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(AGENT).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fleetsafe":
            if node.module == "fleetsafe":
                found |= {alias.name for alias in node.names if alias.name != "__version__"}
            else:
                found.add(node.module.removeprefix("fleetsafe."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("fleetsafe.") for a in node.names if a.name.startswith("fleetsafe.")}
    return found


def _rank(name: str) -> int:
    if name in RANK:
        return RANK[name]
    if f"{name}.__init__" in RANK:  # "repo" means the package
        return RANK[f"{name}.__init__"]
    raise AssertionError(f"module fleetsafe.{name} has no layer in tests/unit/agent/test_layers.py")


def test_every_module_has_a_layer() -> None:
    modules = {_module_name(p) for p in AGENT.rglob("*.py")}
    assert modules - set(RANK) == set()


def test_imports_only_go_downwards() -> None:
    violations = []
    for path in sorted(AGENT.rglob("*.py")):
        me = _module_name(path)
        package = me.split(".")[0] if "." in me else None
        for dep in _imports(path):
            same_package = package is not None and dep.split(".")[0] == package
            if _rank(dep) > _rank(me) or (_rank(dep) == _rank(me) and not same_package and dep != me):
                violations.append(f"fleetsafe.{me} imports fleetsafe.{dep}")
    assert violations == []
