"""The shape of s3drive/ (DESIGN.md, Layout and Style), checked on the source so that it stays true.

Read with ast, nothing imported: every import counts, function-level ones included.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "s3drive"
MAX_FUNCTION_LINES = 60


@cache
def modules() -> dict[str, tuple[Path, ast.Module]]:
    """Return module name -> (path, syntax tree) for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = (path, ast.parse(path.read_text(), str(path)))
    return found


def import_statements(name: str) -> list[tuple[str, list[str]]]:
    """Return (absolute module, imported attribute names) for each import statement of a module."""
    path, tree = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    statements = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            statements.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            statements.append((base, [alias.name for alias in node.names]))
    return statements


def imported_names(name: str) -> set[str]:
    """Return the absolute names a module imports (modules, and module.attribute for `from` imports)."""
    names = set()
    for base, attributes in import_statements(name):
        names.add(base)
        names.update(f"{base}.{attribute}" for attribute in attributes)
    return names


def internal_imports(name: str) -> set[str]:
    """Return the package's own modules a module imports: `from . import x` counts x, not the package."""
    known = modules()
    targets = set()
    for base, attributes in import_statements(name):
        submodules = {f"{base}.{attribute}" for attribute in attributes} & known.keys()
        targets |= submodules
        if base in known and (not attributes or len(submodules) < len(attributes)):
            targets.add(base)
    targets.discard(name)
    return targets


def test_no_function_is_longer_than_sixty_lines():
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in modules().values()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_import_graph_has_no_cycle():
    graph = {name: internal_imports(name) for name in modules()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting:
            cycle = visiting[visiting.index(name) :] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    # The check sees imports at all: the factory imports the blueprints' package.
    assert "s3drive.api" in graph["s3drive.app"]


def test_only_storage_and_the_dev_stack_import_boto3():
    importers = {
        name
        for name in modules()
        if any(imported.split(".")[0] in ("boto3", "botocore") for imported in imported_names(name))
    }
    assert "s3drive.storage" in importers
    assert {name for name in importers if name != "s3drive.storage" and not name.startswith("s3drive.dev")} == set()


def test_services_and_policy_never_touch_the_request():
    layers = [name for name in modules() if name.startswith("s3drive.services") or name in PURE_MODULES]
    offenders = {name for name in layers if "flask.request" in imported_names(name)}
    assert layers and offenders == set()


# Modules that know nothing of Flask at all.
PURE_MODULES = (
    "s3drive.errors",
    "s3drive.parts",
    "s3drive.sizes",
    "s3drive.timeutil",
    "s3drive.signing",
    "s3drive.contenttypes",
    "s3drive.inspect",
    "s3drive.inspect.base",
    "s3drive.inspect.sniff",
    "s3drive.inspect.image",
    "s3drive.inspect.archive",
    "s3drive.inspect.pdf",
    "s3drive.inspect.media",
    "s3drive.inspect.rangefile",
    "s3drive.inspect.preview",
)


@pytest.mark.parametrize("name", PURE_MODULES)
def test_pure_modules_import_no_flask(name):
    assert not {imported for imported in imported_names(name) if imported.split(".")[0] == "flask"}


def test_the_command_line_client_loads_no_server_code():
    """s3drive-client starts fast and installs small: nothing it reaches imports Flask, SQLAlchemy or boto3."""
    reached, todo = set(), [name for name in modules() if name.startswith("s3drive.client")]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(internal_imports(name))
    heavy = {
        f"{name} imports {imported}"
        for name in reached
        for imported in imported_names(name)
        if imported.split(".")[0] in ("flask", "sqlalchemy", "boto3", "botocore", "flask_smorest", "marshmallow")
    }
    assert heavy == set()
