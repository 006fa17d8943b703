"""The layers' import rules, read from the source (every import statement, at module level or inside a function;
imports under `if TYPE_CHECKING:` only name types and load nothing, so they are not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module an import statement of `path` loads (relative imports resolved), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
            else:
                assert node.module is not None
                found.append((node.module, node.lineno))
    return found


def _edges(package: str) -> list[tuple[str, str, int]]:
    root = REPO.joinpath(*package.split("."))
    files = sorted(root.rglob("*.py"))
    assert files, f"no module under {root}"
    return [(_module(p), name, line) for p in files for name, line in _imports(p)]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _offending(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = (), exempt_modules: tuple[str, ...] = ()
) -> list[str]:
    return [
        f"{mod}:{line} imports {name}"
        for mod, name, line in _edges(package)
        if any(_under(name, f) for f in forbidden)
        and not any(_under(name, a) for a in allowed)
        and mod not in exempt_modules
    ]


@pytest.mark.parametrize("package", ["simulator.timing", "simulator.costs", "simulator.config", "analysis"])
def test_torch_free_layers(package: str) -> None:
    """Timing, costs, configuration and analysis run (and validate, and plot) without torch or learning."""
    assert _offending(package, ("torch", "simulator.learning")) == []


def test_output_is_torch_free_but_for_checkpoints() -> None:
    assert _offending("simulator.output", ("torch",), exempt_modules=("simulator.output.checkpoint_io",)) == []
    assert _offending("simulator.output", ("simulator.learning",)) == []


def test_learning_has_no_clock() -> None:
    assert _offending("simulator.learning", ("simpy", "simulator.timing")) == []


def test_engine_joins_the_worlds_through_their_builders() -> None:
    """The engine reaches learning only through the learning world's builder and the strategies' base class."""
    allowed = ("simulator.learning.build", "simulator.learning.strategies")
    assert _offending("simulator.engine", ("simulator.learning",), allowed) == []
    # `simulator.learning.strategies` is allowed only as the package face that names the base class
    strategies = [name for _, name, _ in _edges("simulator.engine") if _under(name, "simulator.learning.strategies")]
    assert all(
        name in ("simulator.learning.strategies", "simulator.learning.strategies.learner") for name in strategies
    ), strategies


def test_the_reader_sees_every_kind_of_import() -> None:
    """The rules above hold because nothing is imported, not because the reader misses imports."""
    probe = REPO / "simulator" / "engine" / "simulation.py"
    names = {name for name, _ in _imports(probe)}
    assert {"simulator.learning.build", "simulator.timing.build", "simpy"} <= names
    lazy = {name for name, _ in _imports(REPO / "simulator" / "learning" / "build.py")}
    assert "simulator.learning.data.datasets" in lazy  # imported inside a function only
