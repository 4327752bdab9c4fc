"""The import direction of docs/ARCHITECTURE.md, checked on the source: who may import whom.

Module-level and function-level imports both count, except for the service and the API, which
may load gkd_core's dataset validator and timm's model facts lazily inside a function (dataset
registration validates inline) but never when they start.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_SIDE = {"api", "service", "worker", "gkd_core", "migrations"}

# package -> (top-level packages it must never import, whether function-level imports count too)
RULES: dict[str, tuple[set[str], bool]] = {
    "gkd_core": ({"api", "service", "worker", "gkd_cli", "gkd_client", "migrations"}, True),
    "gkd_catalog": (SERVER_SIDE | {"gkd_cli", "gkd_client"}, True),
    "service": ({"api", "worker", "gkd_core", "gkd_cli", "gkd_client", "torch"}, False),
    "api": ({"worker", "gkd_core", "gkd_cli", "gkd_client", "torch"}, False),
    "gkd_client": (SERVER_SIDE | {"gkd_cli", "torch", "celery", "sqlalchemy", "fastapi"}, True),
    # The CLI's local commands (serve, keys, data, demo) import the server stack inside the command.
    "gkd_cli": (SERVER_SIDE | {"torch", "celery", "sqlalchemy", "fastapi"}, False),
}


def imported_roots(path: Path, *, nested: bool) -> set[str]:
    """Top-level names of every absolute import in ``path`` (only module-level ones unless ``nested``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = ast.walk(tree) if nested else iter(tree.body)
    roots: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


# Modules that are the server side of a local command and are only ever imported inside that command
# (tests/test_packages.py proves the remote commands never load them).
EXEMPT = {"gkd_cli/serve.py"}


def violations(package: str) -> list[str]:
    forbidden, nested = RULES[package]
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if str(path.relative_to(ROOT)) in EXEMPT:
            continue
        bad = imported_roots(path, nested=nested) & forbidden
        found += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad)]
    return found


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_respects_the_import_direction(package: str) -> None:
    assert violations(package) == []


def test_catalogue_uses_the_standard_library_only() -> None:
    own = {"gkd_catalog", "__future__"}
    for path in (ROOT / "gkd_catalog").rglob("*.py"):
        outside = imported_roots(path, nested=True) - own - set(sys.stdlib_module_names)
        assert not outside, f"{path.name} imports {outside}"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from service.jobs import get_job\n")
    assert imported_roots(module, nested=True) == {"os", "service"}
    assert imported_roots(module, nested=False) == {"os"}
