"""``gkd keys ...``: API key administration (talks to the database directly, not over HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gkd_cli._extras import require

keys_app = typer.Typer(help="API keys: create a key for a team (printed once).", no_args_is_help=True)
_console = Console()


@keys_app.callback()
def _keys() -> None:
    """API key commands."""


@keys_app.command("create")
def create(
    team: Annotated[str, typer.Option("--team", help="Team name (created if new)")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Embedded mode's data directory")] = None,
) -> None:
    """Create an API key for TEAM and print it once (the last line of output is the key)."""
    require("keys create", "server")
    from service.auth import create_api_key
    from service.db import make_engine, session_factory, session_scope, upgrade_database
    from service.errors import DomainError
    from service.settings import Settings, get_settings

    settings = Settings(data_dir=data_dir) if data_dir is not None else get_settings()
    try:
        upgrade_database(settings)
        with session_scope(session_factory(make_engine(settings))) as session:
            key, row = create_api_key(session=session, team_name=team)
            prefix = row.prefix
    except DomainError as exc:
        _console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    _console.print(f"Created key {prefix} for team {team!r}. Store it now: it is not shown again.")
    typer.echo(key)
