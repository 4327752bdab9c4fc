"""The ``gkd`` command line (typer). Commands print one clear line on bad input, never a traceback.

Each command group lives in its own module and is registered here, so the root stays small.
"""

from __future__ import annotations

import typer

from client import cli_jobs, cli_serve
from client.cli_data import data_app
from client.cli_keys import keys_app

app = typer.Typer(
    name="gkd",
    help="GKD Distill: distil vision foundation models into small, domain-robust students.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(keys_app, name="keys")
cli_jobs.register(app)
cli_serve.register(app)


@app.callback()
def _root() -> None:
    """GKD Distill command line."""


@app.command()
def demo() -> None:
    """Run the main job end to end on the embedded default and print per-domain mIoU."""
    from client.demo import run_demo

    raise typer.Exit(run_demo())


def main() -> None:
    """Console-script entry point."""
    app()
