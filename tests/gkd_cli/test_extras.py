"""Local commands name the pyproject extra they need, and the list of what each extra provides stays true."""

from __future__ import annotations

import importlib.metadata
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

from gkd_cli._extras import EXTRA_MODULES
from gkd_cli.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_extra_modules_follow_pyproject() -> None:
    """Each extra's table names a module of every distribution the extra adds, and nothing else."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    modules_of: dict[str, set[str]] = defaultdict(set)
    for module, names in importlib.metadata.packages_distributions().items():
        for name in names:
            modules_of[canonicalize_name(name)].add(module)
    assert set(EXTRA_MODULES) == {"server", "worker"}
    for extra, modules in EXTRA_MODULES.items():
        dists = {canonicalize_name(Requirement(line).name) for line in project["optional-dependencies"][extra]}
        dists.discard(canonicalize_name(project["name"]))
        for dist in dists:
            assert modules_of[dist] & set(modules), f"{extra}: no module of {dist} in gkd_cli._extras.EXTRA_MODULES"
        provided = set().union(*(modules_of[dist] for dist in dists))
        assert set(modules) <= provided, f"{extra}: {sorted(set(modules) - provided)} come from no {extra} dependency"


@pytest.mark.parametrize(
    ("argv", "absent", "install"),
    [
        (["serve"], "torch", "gkd-distill[server,worker]"),
        (["demo", "--quick"], "uvicorn", "gkd-distill[server,worker]"),
        (["keys", "create", "--team", "t"], "sqlalchemy", "gkd-distill[server]"),
        (["data", "validate", "somewhere", "--layout", "folder"], "PIL", "gkd-distill[server]"),
        (["data", "synth", "--out", "somewhere", "--check"], "torch", "gkd-distill[server,worker]"),
    ],
)
def test_missing_extra_is_one_line_naming_it(
    argv: list[str], absent: str, install: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, absent, None)  # as if not installed: find_spec answers None
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and f"pip install '{install}'" in lines[0] and absent in lines[0]
    assert not any(tmp_path.iterdir()), "the command went on after the check"
