"""``python -m api``: serve the API under uvicorn with several worker processes (production's entry point).

One uvicorn process serves the sync routes from one thread pool under one GIL, so it saturates a single
core (issue 15: about 270 req/s). Production runs ``GKD_API_WORKERS`` processes, by default one per core
this process may use; embedded mode defaults to one (``gkd serve`` runs its API in-process anyway).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import uvicorn

from api.metrics import MULTIPROC_ENV
from service.settings import get_settings

_logger = logging.getLogger("api")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (the image passes 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers", type=int, default=None, help="processes; default GKD_API_WORKERS, else the cores in production"
    )
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def share_metrics(workers: int) -> Path | None:
    """Give several worker processes one Prometheus folder (see api/metrics.py), emptied of a previous run's files.

    Must run before the workers import prometheus_client; they inherit the variable. A folder given in
    ``PROMETHEUS_MULTIPROC_DIR`` is used (and its ``*.db`` files removed), else a new temporary one.
    """
    if workers < 2:
        return None
    given = os.environ.get(MULTIPROC_ENV)
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="gkd-prometheus-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workers = args.workers or get_settings().resolved_api_workers
    if workers < 1:
        raise SystemExit(f"--workers must be at least 1 (got {workers})")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(message)s")
    metrics = share_metrics(workers)
    _logger.info("serving on %s:%d with %d worker process(es)", args.host, args.port, workers)
    if metrics is not None:
        _logger.info("Prometheus metrics of all workers are merged through %s", metrics)
    uvicorn.run(
        "api.main:serving_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        log_level=args.log_level,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
