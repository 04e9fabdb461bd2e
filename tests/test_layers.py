"""The package's layers: the pure core imports no I/O, no clock and nothing outside itself;
no class in exporter/ passes 400 lines and no module 700."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "exporter" / "core"

# Modules that touch the world (files, sockets, processes, threads), read the clock or log.
FORBIDDEN = {
    "asyncio", "concurrent", "datetime", "duckdb", "http", "httpx", "io", "logging", "os",
    "pathlib", "random", "select", "selectors", "shutil", "signal", "socket", "ssl",
    "subprocess", "sys", "tempfile", "threading", "time", "urllib", "uvicorn", "starlette",
    "websockets", "apprise", "prometheus_client", "pydantic", "pydantic_settings", "yaml",
}  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module that `path` imports, absolute or relative."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add("exporter.core" + "." * (node.level > 1) + (node.module or ""))
            elif node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_is_pure(path: Path) -> None:
    """A core module imports no I/O or clock module and nothing of the package outside the core."""
    bad = sorted(
        name
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
        or (name.split(".")[0] == "exporter" and not name.startswith("exporter.core"))
    )
    assert bad == [], f"{path.name} imports {bad}"


def test_guard_catches_an_impure_import(tmp_path: Path) -> None:
    """The scanner sees plain, dotted and from-imports, so the guard above cannot pass vacuously."""
    module = tmp_path / "m.py"
    module.write_text("import time\nfrom exporter.config import Settings\nimport os.path\n")
    assert {"time", "exporter.config", "os.path"} <= imported_modules(module)


PACKAGE = CORE.parent
MAX_CLASS_LINES = 400
MAX_MODULE_LINES = 700


def oversized(path: Path) -> list[str]:
    """What in `path` breaks the size rule: the module past 700 lines, classes past 400."""
    source = path.read_text()
    found = []
    if (lines := len(source.splitlines())) > MAX_MODULE_LINES:
        found.append(f"{path.name}: {lines} lines")
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            size = node.end_lineno - node.lineno + 1
            if size > MAX_CLASS_LINES:
                found.append(f"{path.name}: class {node.name} {size} lines")
    return found


def test_no_class_over_400_lines_and_no_module_over_700() -> None:
    """Every module in exporter/ stays within 700 lines and every class in it within 400."""
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 20  # the walk reaches the subpackages
    found = [f"{path.parent.name}/{entry}" for path in paths for entry in oversized(path)]
    assert found == []


def test_size_guard_measures_classes_and_modules(tmp_path: Path) -> None:
    """The size scanner flags a long module and a long class, so the guard cannot pass vacuously."""
    module = tmp_path / "big.py"
    module.write_text("class Big:\n" + "    x = 1\n" * 400 + "\n" * 300)
    assert oversized(module) == ["big.py: 701 lines", "big.py: class Big 401 lines"]
    module.write_text("class Small:\n" + "    x = 1\n" * 399 + "\n" * 300)
    assert oversized(module) == []


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports at load time (not inside functions)."""
    modules = {
        ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        ): path
        for path in package.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for item in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
                if isinstance(item, ast.Import):
                    deps.update(alias.name for alias in item.names)
                elif isinstance(item, ast.ImportFrom) and item.module and not item.level:
                    subs = {f"{item.module}.{alias.name}" for alias in item.names}
                    deps.update(subs & modules.keys() or {item.module})
        graph[name] = {dep for dep in deps if dep in modules and dep != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path that starts and ends on the same module, or [] when none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for dep in sorted(graph[node]):
            if cycle := visit(dep, [*path, node]):
                return cycle
        done.add(node)
        return []

    for start in sorted(graph):
        if cycle := visit(start, []):
            return cycle
    return []


def test_no_import_cycle() -> None:
    """No module of the package imports, through any chain, a module that imports it back."""
    assert find_cycle(import_graph(CORE.parent)) == []


def test_cycle_finder_sees_a_cycle() -> None:
    """The cycle finder reports a three-module loop, so the test above cannot pass vacuously."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
