"""The package's floors: every module imports cvos code only from the floors below its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cvos"
FLOORS = {  # top-level part of cvos -> floor
    "errors": 0, "files": 1,
    "codec": 2, "models": 2, "masks": 2,
    "data": 3, "metrics": 3,
    "inference": 4,
    "lit": 5, "evaluation": 5, "reporting": 5,
    "cli": 6,  # what the entry points share
    "train": 7, "evaluate": 7, "segment": 7, "compare": 7, "prepare": 7, "export": 7,
}  # fmt: skip
ENTRY_POINTS = {"metrics/__main__.py"}  # `python -m cvos.metrics`: top floor, in its package


def part_of(module: str) -> str:
    return module.split(".")[1]


def cvos_imports(path: Path) -> set[str]:
    """The cvos modules a file imports (absolute imports: the project uses no relative ones)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("cvos.")}


FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem in FLOORS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_floors(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    own = relative.parts[0].removesuffix(".py")
    floor = 7 if str(relative) in ENTRY_POINTS else FLOORS[own]
    for name in cvos_imports(path):
        other = part_of(name)
        assert other in FLOORS, f"{relative} imports {name}, which has no floor"
        assert other == own or FLOORS[other] < floor, (
            f"{relative} (floor {floor}) imports {name} (floor {FLOORS[other]})"
        )


def test_every_part_of_the_package_has_a_floor() -> None:
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if not p.name.startswith("_")}
    assert parts - {"__pycache__"} <= set(FLOORS) | {"__init__"}
