"""How fast an s3:// dataset prefix reaches a worker's cache, one object at a time against side by side.

A dataset of many small objects (an ImageNet-size prefix: 1.28 M JPEGs of about 110 KB) is bound by
request round trips when fetched one by one; ``service.remote_mirror.fetch_all`` keeps ``--concurrency`` requests
in flight. This puts ``--objects`` objects of ``--kib`` KiB under a fresh prefix and resolves it through
``UriResolver`` at each concurrency, into an empty cache each time, printing objects/s, MiB/s and the
speed-up over one at a time.

Against a local server both ends share this machine's cores and there is no network latency, so the
speed-up here is a floor: towards a remote store each request also waits a round trip, which the
concurrent fetch overlaps. With no ``--endpoint`` it starts a local SeaweedFS (the one the tests use,
from tests/support/seaweed.py).

``--added-latency-ms`` waits that long before each object, a stand-in for the round trips to a remote
store (a simulation, labelled as such in the output).

Run: ``PYTHONPATH=. .venv/bin/python bench/s3_fetch.py [--objects 1000] [--kib 100] [--concurrency 1 4 16]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.storage import S3Store
from service.uris import UriResolver

BUCKET = "gkd-bench-fetch"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--kib", type=int, default=100, help="size of each object")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--endpoint", help="an S3 endpoint (default: start a local SeaweedFS)")
    parser.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    parser.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    parser.add_argument("--bucket", default=BUCKET)
    parser.add_argument(
        "--added-latency-ms",
        type=float,
        default=0.0,
        help="sleep this long before each object (a stand-in for a remote store's round trips)",
    )
    return parser.parse_args(argv)


class Delayed:
    """The store, with a wait before each download: what a remote store's round trips add to each object."""

    def __init__(self, inner: S3Store, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_file(self, key: str, dest: Path) -> Any:
        time.sleep(self.seconds)
        return self.inner.get_file(key, dest)


@contextlib.contextmanager
def s3_store(args: argparse.Namespace, workdir: Path) -> Iterator[S3Store]:
    """The store to read from: the one named on the command line, or a local SeaweedFS started here."""
    if args.endpoint:
        yield S3Store(
            bucket=args.bucket, endpoint_url=args.endpoint, access_key=args.access_key, secret_key=args.secret_key
        )
        return
    from tests.support.seaweed import seaweed_server  # a development tool: the tests' own S3 server

    with seaweed_server(workdir / "seaweedfs") as server:
        server.ensure_bucket(args.bucket)
        yield S3Store(
            bucket=args.bucket,
            endpoint_url=server.endpoint_url,
            access_key=server.access_key,
            secret_key=server.secret_key,
        )


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    args = parse_args(argv)
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="gkd-s3-fetch-") as tmp, s3_store(args, Path(tmp)) as store:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        payload = os.urandom(args.kib * 1024)
        started = time.perf_counter()
        for i in range(args.objects):
            store.put_bytes(f"{prefix}/train/n{i % 100:08d}/{i:07d}.JPEG", payload)
        delay = f"; {args.added_latency_ms:g} ms added before each object" if args.added_latency_ms else ""
        print(f"wrote {args.objects} objects of {args.kib} KiB in {time.perf_counter() - started:.1f} s; "
              f"{os.cpu_count()} CPUs{delay}", flush=True)  # fmt: skip
        print(f"{'concurrency':>11} {'seconds':>8} {'objects/s':>10} {'MiB/s':>7} {'speed-up':>8}", flush=True)
        base = None
        source: Any = Delayed(store, args.added_latency_ms / 1e3) if args.added_latency_ms else store
        for concurrency in args.concurrency:
            cache = Path(tmp) / f"cache-{concurrency}"
            resolver = UriResolver(
                roots=[], cache_dir=cache, s3_store_for_bucket=lambda _b: source, download_concurrency=concurrency
            )
            tick = time.perf_counter()
            folder = resolver.resolve(f"s3://{args.bucket}/{prefix}/")
            seconds = time.perf_counter() - tick
            fetched = sum(1 for p in folder.rglob("*.JPEG"))
            if fetched != args.objects:
                raise SystemExit(f"fetched {fetched} of {args.objects} objects at concurrency {concurrency}")
            rate = args.objects / seconds
            base = base or rate
            row = {"concurrency": concurrency, "seconds": seconds, "objects_per_s": rate}
            rows.append(row)
            mib = rate * args.kib / 1024
            print(f"{concurrency:>11} {seconds:>8.2f} {rate:>10.0f} {mib:>7.1f} {rate / base:>7.2f}x", flush=True)
    return rows


if __name__ == "__main__":
    main()
