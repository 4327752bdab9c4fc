"""``gkd serve``: the embedded mode (API + one worker, SQLite, local artifacts, no Redis)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the serve command to the root app."""
