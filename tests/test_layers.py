"""The package's layers: the pure core imports no I/O, no clock and nothing outside itself."""

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
