"""Architecture rules of the workspace (DESIGN.md), checked on the source text.

1. Every name in each package's ``__all__`` resolves.
2. The import graph: no package imports ``occflow_train``; ``volrender`` imports no sibling;
   every package (source and tests) imports only siblings it declares in its pyproject.
"""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())


def _dist_to_import(dist: str) -> str:
    return dist.replace("-", "_")


def _declared_siblings(pkg_dir: Path, siblings: set[str]) -> set[str]:
    meta = tomllib.loads((pkg_dir / "pyproject.toml").read_text())
    names = set()
    for req in meta["project"].get("dependencies", []):
        name = re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].strip().lower()
        if _dist_to_import(name) in siblings:
            names.add(_dist_to_import(name))
    return names


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module imported by ``source`` (absolute imports only)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def sibling_imports(pkg_dir: Path, siblings: set[str], root: Path = ROOT) -> dict[str, list[str]]:
    """Map each sibling import name used by ``pkg_dir`` (src and tests) to the files using it."""
    own = _dist_to_import(pkg_dir.name)
    uses: dict[str, list[str]] = {}
    for path in sorted([*pkg_dir.glob("src/**/*.py"), *pkg_dir.glob("tests/**/*.py"),
                        *pkg_dir.glob("benchmarks/**/*.py")]):
        for mod in imported_modules(path.read_text()) & (siblings - {own}):
            uses.setdefault(mod, []).append(str(path.relative_to(root)))
    return uses


SIBLINGS = {_dist_to_import(p.name) for p in PACKAGES}


def test_seven_packages_present():
    assert SIBLINGS == {"volrender", "occflow_data", "occflow_metrics", "pseudolabels",
                        "tpv_encoder", "temporal_fusion", "occflow_train"}


@pytest.mark.parametrize("pkg_dir", PACKAGES, ids=lambda p: p.name)
def test_all_names_resolve(pkg_dir: Path):
    module = importlib.import_module(_dist_to_import(pkg_dir.name))
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module.__name__} has no __all__"
    assert len(names) == len(set(names)), f"{module.__name__}.__all__ has duplicates"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{module.__name__}.__all__ names that do not resolve: {missing}"


@pytest.mark.parametrize("pkg_dir", PACKAGES, ids=lambda p: p.name)
def test_imports_follow_design(pkg_dir: Path):
    uses = sibling_imports(pkg_dir, SIBLINGS)
    own = _dist_to_import(pkg_dir.name)
    if own != "occflow_train":
        assert "occflow_train" not in uses, (
            f"nothing may import occflow_train: {uses.get('occflow_train')}")
    if own == "volrender":
        assert not uses, f"volrender must import no sibling package, found {uses}"
    undeclared = {m: files for m, files in uses.items()
                  if m not in _declared_siblings(pkg_dir, SIBLINGS)}
    assert not undeclared, (f"{pkg_dir.name} imports siblings not declared in its pyproject.toml: "
                            f"{undeclared}")


def test_checker_sees_forbidden_import(tmp_path: Path):
    """The scanner itself: a forbidden import in a file is found (guards against a blind test)."""
    fake = tmp_path / "volrender"
    (fake / "src" / "volrender").mkdir(parents=True)
    (fake / "src" / "volrender" / "x.py").write_text(
        "import occflow_data.schema\nfrom tpv_encoder import a\nfrom . import _local\n")
    assert set(sibling_imports(fake, SIBLINGS, root=tmp_path)) == {"occflow_data", "tpv_encoder"}
