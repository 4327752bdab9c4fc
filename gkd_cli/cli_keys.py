"""``gkd keys ...``: API key administration (talks to the database directly, not over HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gkd_cli import output
from gkd_cli._extras import require
from gkd_cli.cli_jobs import JsonOpt, KeyOpt, UrlOpt, _client, _one_line_errors

keys_app = typer.Typer(
    help="API keys: create a key for a team (printed once; operator, on the server), list and revoke (over HTTP).",
    no_args_is_help=True,
)
_console = Console()


@keys_app.callback()
def _keys() -> None:
    """API key commands."""


@keys_app.command("create")
def create(
    team: Annotated[str, typer.Option("--team", help="Team name (created if new)")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Embedded mode's data directory")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="The key may list and revoke every team's keys")] = False,
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
            key, row = create_api_key(session=session, team_name=team, admin=admin)
            prefix = row.prefix
    except DomainError as exc:
        _console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    _console.print(f"Created key {prefix} for team {team!r}. Store it now: it is not shown again.")
    typer.echo(key)


@keys_app.command("list")
@_one_line_errors
def list_keys(
    team: Annotated[str | None, typer.Option("--team", help="Admin keys: only this team's keys")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the keys this key may see (its team's; every team's for an admin key). Secrets are never shown."""
    with _client(url, api_key) as client:
        rows = client.keys(team=team)
    if as_json:
        output.emit_json({"items": rows})
        return
    table = Table(title="API keys", title_justify="left")
    for column in ("prefix", "team", "admin", "created", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            escape(str(row["prefix"])), escape(str(row["team"])), "yes" if row.get("admin") else "",
            escape(str(row["created_at"])), escape(str(row.get("revoked_at") or "")),
        )
    output.console.print(table)


@keys_app.command("revoke")
@_one_line_errors
def revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (the 12 hex digits after gkd_), see gkd keys list")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Revoke a key: it stops working at once (revoking it again changes nothing)."""
    with _client(url, api_key) as client:
        client.revoke_key(prefix)
    output.console.print(f"revoked key {escape(prefix)}")
