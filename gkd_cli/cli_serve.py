"""``gkd serve``: the embedded mode (API + one worker, SQLite, local artifacts, no Redis)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from gkd_cli._extras import require

_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the serve command to the root app."""

    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
        data_dir: Path = typer.Option(Path(".gkd"), "--data-dir", help="Database, queue, artifacts and API key."),
    ) -> None:
        """Serve the API and one worker on this machine (SQLite, no Redis, local artifacts)."""
        require("serve", "server", "worker")
        from gkd_cli.serve import EmbeddedPaths
        from gkd_cli.serve import serve as run

        paths = EmbeddedPaths(data_dir.expanduser().resolve())
        _console.print(
            f"GKD Distill on http://{host}:{port}  (dashboard: /dashboard)\n"
            f"API key for team 'local': {paths.key_file}  (export GKD_API_KEY=$(cat {paths.key_file}))\n"
            f"worker log: {paths.logs / 'worker.log'}"
        )
        run(host, port, paths.data_dir)
