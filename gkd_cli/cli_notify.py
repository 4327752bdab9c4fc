"""``gkd notify-secret rotate``: the team's notification signing secret, printed once (over HTTP)."""

from __future__ import annotations

import typer

from gkd_cli import output
from gkd_cli.remote import JsonOpt, KeyOpt, UrlOpt, client, one_line_errors

notify_app = typer.Typer(
    help="Job notifications: rotate the team's webhook signing secret (printed once).", no_args_is_help=True
)


@notify_app.callback()
def _notify() -> None:
    """Notification signing secret commands."""


@notify_app.command("rotate")
@one_line_errors
def rotate(url: UrlOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Create or replace the signing secret; the old one stops signing at once. The last line is the secret."""
    with client(url, api_key) as sdk:
        created = sdk.rotate_notify_secret()
    if as_json:
        output.emit_json({"secret": created.secret, "header": created.header, "created_at": created.created_at})
        return
    output.console.print(
        f"New signing secret: receivers check the {created.header} header with it "
        "(gkd_client.verify_signature). Store it now: it is not shown again."
    )
    typer.echo(created.secret)
