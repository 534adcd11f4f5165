"""The layout's promises: no import cycles, and each folder holds what its name says."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "adapters", "brain")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def folder_of(module: str) -> str:
    """The folder a module lives in (a package's `__init__` lives in its own)."""
    if (ROOT / module.replace(".", "/")).is_dir():
        return module
    return module.rsplit(".", 1)[0]


def runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:`: an annotation naming its caller's
    class (an outbox typed with the client that made it) is not an import at run time."""
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for statement in node.body
        for child in ast.walk(statement)
    }
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The first-party modules a file imports, wherever the import stands (a late import
    inside a function hides a cycle from Python, not from this test)."""
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, known) - {module_name(p)} for p in files}


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as the path that closes it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_back() -> None:
    assert cycle_in(import_graph()) is None


def test_no_two_folders_import_each_other() -> None:
    """Folders as units: brain.history may use brain.database, never the other way too."""
    folders: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        folder = folder_of(module)
        for target in targets:
            target_folder = folder_of(target)
            if target_folder != folder and not folder.startswith(target_folder + "."):
                folders.setdefault(folder, set()).add(target_folder)
    assert cycle_in(folders) is None


def test_every_benchmark_still_imports() -> None:
    """The benchmarks are not run by the suite; a module moved under them must not go
    unnoticed until someone measures (bench_mixture had lost `synthesis_prompt`)."""
    for path in sorted((ROOT / "bench").glob("*.py")):
        importlib.import_module(f"bench.{path.stem}")
