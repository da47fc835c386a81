"""The package layout shows the loop, and the import edges keep it that way (../shared/ARCHITECTURE.md):
planner is pure; render reads plans; launcher starts what render wrote; bench measures what launcher started;
cli may use everything. No module reaches into another package's private (`_`) names."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "serveplan"
BASE = {"errors", "fileio"}
ALLOWED = {
    "errors": set(), "fileio": {"errors"},
    "planner": BASE,
    "render": BASE | {"planner"},
    "launcher": BASE | {"planner", "render"},
    "bench": BASE | {"planner", "render", "launcher"},
    "hwprofile": BASE | {"planner"},
    "quantize": BASE | {"planner"},
    "testing": BASE | {"planner"},
    "cli": BASE | {"planner", "render", "launcher", "bench", "hwprofile", "quantize", "testing"},
    "__init__": BASE | {"planner"},
}


def _package(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported serveplan module, names) for every import in the file, lazy ones inside functions too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("serveplan"):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("serveplan")]
    return out


def _target(module: str, names: list[str]) -> str:
    parts = module.split(".")
    if len(parts) == 1:  # from serveplan import x
        return names[0] if names else "__init__"
    return parts[1]


def test_every_module_belongs_to_a_known_package():
    for f in PKG.rglob("*.py"):
        assert _package(f) in ALLOWED, f"{f.relative_to(PKG)}: not a package of the layout"


def test_import_edges():
    bad = []
    for f in PKG.rglob("*.py"):
        own = _package(f)
        for module, names in _imports(f):
            dep = _target(module, names)
            if dep != own and dep not in ALLOWED[own]:
                bad.append(f"{f.relative_to(PKG)} imports {module} ({own} -> {dep})")
    assert not bad, "\n".join(bad)


def test_no_private_names_across_packages():
    bad = []
    for f in PKG.rglob("*.py"):
        own = _package(f)
        for module, names in _imports(f):
            if _target(module, names) != own:
                bad += [f"{f.relative_to(PKG)}: {module}.{n}" for n in names if n.startswith("_")]
    assert not bad, "\n".join(bad)


def test_markers_are_declared_and_used():
    """--strict-markers: a marker typo fails the run instead of silently selecting nothing."""
    import tomllib

    conf = tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in conf["addopts"]
    declared = {m.split(":")[0] for m in conf["markers"]}
    assert declared == {"slow", "timing", "gpu"}
    used = {m for f in (PKG.parent / "tests").glob("test_*.py") for m in declared if f"mark.{m}" in f.read_text()}
    assert used == declared
