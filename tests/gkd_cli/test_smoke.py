"""The gkd command line is wired up."""

from __future__ import annotations

from typer.testing import CliRunner

from gkd_cli.cli import app


def test_cli_help_lists_demo() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output
