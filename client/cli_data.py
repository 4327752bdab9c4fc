"""``gkd data ...``: dataset helpers (synthetic benchmark generation, layout validation)."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Datasets: generate the synthetic benchmark, validate layouts.", no_args_is_help=True)


@data_app.callback()
def _data() -> None:
    """Dataset commands."""
