"""The gkd command line is wired up."""

from __future__ import annotations

from typer.testing import CliRunner

import gkd_catalog
from gkd_cli.cli import app


def test_cli_help_lists_demo() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output


def test_submit_help_lists_the_catalogue() -> None:
    result = CliRunner().invoke(app, ["submit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in [*gkd_catalog.METHODS, *gkd_catalog.HEADS]:
        assert name in result.output
