"""Job commands of the ``gkd`` CLI (submit, list, status, watch, events, cancel, download, eval)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the job commands to the root app."""
