"""The layer rules of docs/architecture.md, checked by reading every module's imports (ast, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("catalog_service", "webhooks", "jobs")

# The web layer: Flask blueprints, the app factory and what only they use.
WEB = ("catalog_service.app", "catalog_service.current", "catalog_service.api", "catalog_service.api_backfills",
       "catalog_service.assets",
       "catalog_service.ops", "catalog_service.shopify_install", "catalog_service.openapi", "catalog_service.web",
       "webhooks")
# The entry points may import anything.
ENTRY = ("catalog_service.cli", "catalog_service.demo")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Every module a file imports, relative imports resolved; `top_level_only` skips function bodies."""
    return _imports_of(path.read_text(), _module_name(path), is_package=path.name == "__init__.py",
                       top_level_only=top_level_only)


def _imports_of(source: str, module: str, *, is_package: bool = False, top_level_only: bool = False) -> set[str]:
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:
        # Imports under `if TYPE_CHECKING:` never run; a cycle through them is not one.
        nodes = [node for node in nodes if not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from . import x` and `from .pkg import mod` may name modules.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            if "migrations" not in path.parts}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...], *, allowed: tuple[str, ...] = (),
                exact: bool = False) -> list[str]:
    """`name imports module` for each import of a forbidden module by a module in `sources` (and below)."""
    found = []
    for name, path in _modules().items():
        if (name not in sources if exact else not _within(name, sources)) or _within(name, allowed):
            continue
        bad = sorted(imported for imported in _imports(path) if _within(imported, forbidden))
        found.extend(f"{name} imports {imported}" for imported in bad)
    return found


def test_imaging_is_pure() -> None:
    """imaging/ takes bytes and images: no web, queue, database, HTTP or other part of the service."""
    assert _violations(("catalog_service.imaging",), (
        "flask", "werkzeug", "rq", "redis", "sqlalchemy", "requests", "openai", *WEB, "jobs",
        "catalog_service.db", "catalog_service.models", "catalog_service.services", "catalog_service.config",
        "catalog_service.scenes", "catalog_service.stores", "catalog_service.http", "catalog_service.storage",
    )) == []


def test_providers_and_connectors_know_no_web_queue_or_database() -> None:
    """scenes/ and stores/ sit behind one interface each; the database and the web are the callers' business."""
    assert _violations(("catalog_service.scenes", "catalog_service.stores"), (
        "flask", "werkzeug", "rq", "redis", "sqlalchemy", *WEB, "jobs", "catalog_service.db",
        "catalog_service.models", "catalog_service.services", "catalog_service.intake",
        "catalog_service.connectors", "catalog_service.shop_tokens",
    )) == []


def test_the_core_and_the_jobs_never_import_flask_or_the_web_app() -> None:
    """Jobs, intake, services, connectors and every other core module run in a worker that has no web app."""
    core = tuple(name for name in _modules() if not _within(name, WEB + ENTRY))
    assert "jobs.render" in core and "catalog_service.intake" in core and "catalog_service.db" in core
    assert _violations(core, ("flask", "werkzeug", *WEB), exact=True) == []


def test_only_jobs_know_rq() -> None:
    """RQ is the jobs' business: everything else queues work through jobs.queues."""
    assert _violations(PACKAGES, ("rq",), allowed=("jobs",)) == []


def test_modules_import_without_cycles() -> None:
    """No module needs another that needs it back at import time (blueprints included)."""
    modules = _modules()
    graph = {name: {imported for imported in _imports(path, top_level_only=True) if imported in modules}
             for name, path in modules.items()}
    for name in graph:
        graph[name].discard(name)  # `from . import x` inside a package's own __init__
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize("source, imported", [
    ("from flask import Flask\n", "flask"),
    ("def f():\n    from catalog_service.app import create_app\n", "catalog_service.app"),
    ("from ..current import services\n", "catalog_service.current"),
    ("from .. import models\n", "catalog_service.models"),
])
def test_the_checker_sees_deferred_and_relative_imports(source: str, imported: str) -> None:
    """A rule is only as good as the import walk: function-level and relative imports are found."""
    assert imported in _imports_of(source, "catalog_service.imaging.probe")
