"""The layering of docs/architecture.md as a test: imports run down the layers, private names stay home.

Every module under ``medunet/`` is parsed (``ast``), and every import is checked, also the ones inside
functions: a package may import only packages of a lower layer (or itself), and no module may take a
``_private`` name from another module. The checker is tested on generated trees that break each rule.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The table of docs/architecture.md: a package may import the packages of lower layers only.
LAYERS: dict[str, int] = {
    "utils": 0,
    "networks": 1,
    "io": 1,
    "data": 1,
    "losses": 1,
    "metrics": 1,
    "inference": 2,
    "transforms": 2,
    "export": 2,
    "handlers": 3,
    "runtime": 3,
    "engines": 4,
    "apps": 5,
    "cli": 6,
    "napari_plugin": 6,
}
ROOT = "medunet"  # the package itself: ``import medunet`` (its version) is allowed everywhere


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _unit(module: str) -> str | None:
    """The layer unit of a dotted medunet module name (``medunet.io.pacs`` -> ``io``); None outside medunet."""
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    return ROOT if len(parts) == 1 else parts[1]


def _module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str, list[str]]]:
    """``(line, imported module, imported names)`` of every import in the tree, relative ones resolved."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target, [alias.name for alias in node.names]))
    return found


def check_tree(root: Path) -> list[Violation]:
    """Every layering and privacy violation in the package ``root / "medunet"``."""
    violations: list[Violation] = []
    package_dir = root / ROOT
    modules = {_module_name(p, root) for p in package_dir.rglob("*.py")}
    for path in sorted(package_dir.rglob("*.py")):
        module = _module_name(path, root)
        unit = _unit(module)
        assert unit is not None
        if unit != ROOT and unit not in LAYERS:
            violations.append(Violation(str(path), 1, f"package {unit!r} has no layer in the table"))
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target, names in _imports(tree, module, path.name == "__init__.py"):
            target_unit = _unit(target)
            if target_unit is None:
                continue
            if unit != ROOT and target_unit not in (unit, ROOT):
                if target_unit not in LAYERS:
                    violations.append(Violation(str(path), line, f"imports {target}, which has no layer"))
                elif LAYERS[target_unit] >= LAYERS[unit]:
                    violations.append(
                        Violation(
                            str(path),
                            line,
                            f"{unit} (layer {LAYERS[unit]}) imports {target} ({target_unit}, layer "
                            f"{LAYERS[target_unit]}): imports must run down the layers",
                        )
                    )
            for name in names:
                # ``from medunet.x import _y``: allowed only for a private submodule of the importer's own package.
                own_submodule = f"{target}.{name}" in modules and target_unit == unit
                if name.startswith("_") and target != module and not own_submodule:
                    violations.append(Violation(str(path), line, f"imports the private name {name} from {target}"))
    return violations


def import_circles(root: Path) -> list[Violation]:
    """Modules of one package that import each other, directly or through others of that package (imports inside
    functions included: a circle hidden in a function body is still one concept split in two). A package's
    ``__init__`` re-exports its modules and is left out."""
    package_dir = root / ROOT
    paths = {_module_name(p, root): p for p in package_dir.rglob("*.py") if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges = set()
        for _, target, names in _imports(tree, module, False):
            for candidate in (target, *(f"{target}.{n}" for n in names)):
                if candidate in paths and candidate != module and _unit(candidate) == _unit(module):
                    edges.add(candidate)
        graph[module] = edges
    circles, seen = [], set()
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    key = frozenset(trail)
                    if key not in seen:
                        seen.add(key)
                        circles.append(
                            Violation(str(paths[start]), 1, "import circle: " + " -> ".join([*trail, start]))
                        )
                elif nxt not in trail and nxt > start:  # each circle once, from its smallest module
                    stack.append((nxt, [*trail, nxt]))
    return circles


def test_no_import_circle_within_a_package() -> None:
    circles = import_circles(REPO)
    assert not circles, "\n".join(map(str, circles))


def test_circle_check_finds_a_circle_hidden_in_a_function(tmp_path: Path) -> None:
    files = {
        "medunet/io/__init__.py": "from medunet.io.seg import write\n",
        "medunet/io/seg.py": "def write():\n    from medunet.io.sr import report\n",
        "medunet/io/sr.py": "from medunet.io import seg\n\ndef report(): ...\n",
        "medunet/io/series.py": "",
        "medunet/io/image.py": "from medunet.io.series import *\n",
    }
    circles = import_circles(_tree(tmp_path, files))
    assert [v.message for v in circles] == ["import circle: medunet.io.seg -> medunet.io.sr -> medunet.io.seg"]


def test_medunet_imports_follow_the_layers() -> None:
    violations = check_tree(REPO)
    assert not violations, "\n".join(map(str, violations))


def test_every_package_has_a_layer_and_is_in_the_architecture_doc() -> None:
    packages = {p.name for p in (REPO / ROOT).iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in (REPO / ROOT).glob("*.py") if p.stem != "__init__"}
    assert packages | modules == set(LAYERS)
    rows = {}  # layer -> the packages cell of its row in the doc's table
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            rows[int(cells[0])] = cells[1]
    placed = {unit: layer for layer, cell in rows.items() for unit in LAYERS if f"`{unit}`" in cell}
    assert placed == LAYERS, "docs/architecture.md's table and LAYERS differ"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"medunet/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # io (layer 1) reaching up to apps (layer 5), hidden in a function body
            {
                "medunet/io/__init__.py": "",
                "medunet/io/reader.py": "def f():\n    from medunet.apps.segmenter import BundleSegmenter\n",
                "medunet/apps/__init__.py": "",
                "medunet/apps/segmenter.py": "class BundleSegmenter: ...\n",
            },
            "imports must run down the layers",
        ),
        (  # a sideways import within one layer (transforms and inference are both layer 2)
            {
                "medunet/transforms/__init__.py": "",
                "medunet/transforms/tiles.py": "import medunet.inference.overlap_tile\n",
                "medunet/inference/__init__.py": "",
                "medunet/inference/overlap_tile.py": "",
            },
            "imports must run down the layers",
        ),
        (  # a private name from another module, through a relative import
            {
                "medunet/io/__init__.py": "",
                "medunet/io/pacs.py": "def _no_delay(): ...\n",
                "medunet/engines/__init__.py": "",
                "medunet/engines/workflow.py": "from ..io.pacs import _no_delay\n",
            },
            "private name _no_delay",
        ),
        (  # a package the table does not know
            {"medunet/extras/__init__.py": "", "medunet/extras/thing.py": ""},
            "has no layer",
        ),
    ],
)
def test_checker_catches_injected_violations(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    violations = check_tree(_tree(tmp_path, files))
    assert any(expected in v.message for v in violations), violations


def test_checker_accepts_downward_and_own_private_imports(tmp_path: Path) -> None:
    files = {
        "medunet/utils/__init__.py": "",
        "medunet/utils/regions.py": "def extract_region(): ...\n",
        "medunet/inference/__init__.py": "",
        "medunet/inference/_impl.py": "",
        "medunet/inference/overlap_tile.py": (
            "import medunet\nfrom medunet.utils.regions import extract_region\nfrom medunet.inference import _impl\n"
        ),
    }
    assert check_tree(_tree(tmp_path, files)) == []


# Test modules that test the repository rather than one module of medunet.
REPOSITORY_TESTS = {"test_layering.py", "test_notebooks.py"}


def test_tests_mirror_the_package() -> None:
    """``tests/<package>/test_<module>.py`` tests ``medunet/<package>/<module>.py`` (one module under test
    each); ``tests/bundles`` holds the end-to-end runs of the bundles, ``tests/reliability`` the hostile-input
    and crash cases across modules (docs/reliability.md), ``tests/monailabel`` the MONAI Label app of
    ``apps/monailabel`` (outside the package: it runs in MONAI Label's environment)."""
    orphans = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        relative = path.relative_to(REPO / "tests")
        if relative.parts[0] in ("bundles", "reliability", "monailabel") or path.name in REPOSITORY_TESTS:
            continue
        source = REPO / ROOT / relative.parent / (path.stem.removeprefix("test_") + ".py")
        if not source.is_file():
            orphans.append(f"{relative} (no {source.relative_to(REPO)})")
    assert not orphans, "test modules that mirror no module: " + ", ".join(orphans)


def where_tested(architecture: str) -> dict[str, list[str]]:
    """The rows of the "module | tested in" table of docs/architecture.md: module path -> test files named."""
    rows: dict[str, list[str]] = {}
    for line in architecture.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith(f"`{ROOT}/") and "tests/" in cells[1]:
            rows[cells[0].strip("`")] = re.findall(r"`(tests/[^`]+\.py)`", cells[1])
    return rows


def untested_modules(root: Path, rows: dict[str, list[str]]) -> list[str]:
    """Modules with neither their own test module nor a row saying where they are tested (whose files exist)."""
    missing = []
    for path in sorted((root / ROOT).rglob("*.py")):
        if path.name == "__init__.py":
            continue
        relative = path.relative_to(root / ROOT)
        own = root / "tests" / relative.parent / f"test_{path.stem}.py"
        named = rows.get(str(path.relative_to(root)), [])
        if not own.is_file() and not (named and all((root / t).is_file() for t in named)):
            missing.append(str(path.relative_to(root)))
    return missing


def test_every_module_is_tested_by_its_test_module_or_a_named_one() -> None:
    rows = where_tested((REPO / "docs" / "architecture.md").read_text())
    missing = untested_modules(REPO, rows)
    assert not missing, (
        "modules without tests/<package>/test_<module>.py and without a row in docs/architecture.md's "
        "'module | tested in' table: " + ", ".join(missing)
    )
    stale = [module for module in rows if not (REPO / module).is_file()]
    assert not stale, "docs/architecture.md names tests for modules that do not exist: " + ", ".join(stale)


def test_mirror_check_finds_an_untested_module(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"medunet/io/a.py": "", "medunet/io/b.py": "", "medunet/io/c.py": "",
                            "tests/io/test_a.py": "", "tests/io/test_other.py": ""})  # fmt: skip
    rows = where_tested(
        "| `medunet/io/b.py` | `tests/io/test_other.py` (through a) |\n| `medunet/io/c.py` | `tests/io/test_gone.py` |"
    )
    assert untested_modules(root, rows) == ["medunet/io/c.py"]
