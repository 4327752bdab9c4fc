"""``gkd keys ...``: API key administration (talks to the database directly, not over HTTP)."""

from __future__ import annotations

import typer

keys_app = typer.Typer(help="API keys: create a key for a team (printed once).", no_args_is_help=True)


@keys_app.callback()
def _keys() -> None:
    """API key commands."""
