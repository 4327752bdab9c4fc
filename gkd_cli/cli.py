"""The ``gkd`` command line (typer). Commands print one clear line on bad input, never a traceback.

Each command group lives in its own module and is registered here, so the root stays small.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gkd_cli import cli_datasets, cli_jobs, cli_serve
from gkd_cli._extras import require
from gkd_cli.cli_data import data_app
from gkd_cli.cli_keys import keys_app
from gkd_cli.cli_notify import notify_app

app = typer.Typer(
    name="gkd",
    help="GKD Distill: distil vision foundation models into small, domain-robust students.",
    no_args_is_help=True,
    add_completion=False,
)
cli_datasets.register(data_app)
app.add_typer(data_app, name="data")
app.add_typer(keys_app, name="keys")
app.add_typer(notify_app, name="notify-secret")
cli_jobs.register(app)
cli_serve.register(app)


@app.callback()
def _root() -> None:
    """GKD Distill command line."""


@app.command()
def demo(
    data_dir: Path = typer.Option(Path(".gkd"), "--data-dir", help="Where the embedded service keeps its data."),
    quick: bool = typer.Option(False, "--quick", help="A tiny run (seconds) that checks the plumbing only."),
    port: int = typer.Option(0, help="Port for the embedded server (0: any free port)."),
) -> None:
    """Serve embedded, distil on the synthetic benchmark through the API, print per-domain mIoU."""
    require("demo", "server", "worker")
    from gkd_cli.demo import run_demo

    raise typer.Exit(run_demo(data_dir, quick=quick, port=port or None))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
