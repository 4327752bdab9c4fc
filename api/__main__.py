"""``python -m api``: serve the API under uvicorn with several worker processes (production's entry point).

One uvicorn process serves the sync routes from one thread pool under one GIL, so it saturates a single
core (issue 15: about 270 req/s). Production runs ``GKD_API_WORKERS`` processes, by default one per core
this process may use; embedded mode defaults to one (``gkd serve`` runs its API in-process anyway).
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workers = args.workers or get_settings().resolved_api_workers
    if workers < 1:
        raise SystemExit(f"--workers must be at least 1 (got {workers})")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(message)s")
    _logger.info("serving on %s:%d with %d worker process(es)", args.host, args.port, workers)
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        log_level=args.log_level,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
