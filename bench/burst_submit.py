"""Load test: a burst of job submissions with Idempotency-Keys (some repeated on purpose), then cancel them all.

``python -m bench.burst_submit --embedded``                    start ``gkd serve`` in a temporary folder
``python -m bench.burst_submit --url URL --api-key KEY --dataset-root DIR``   target a running service

What it does:

1. Writes a tiny labelled dataset (``folder`` layout, 32 px) under ``--dataset-root`` (a folder the
   server allows: ``GKD_ALLOWED_ROOTS``; embedded mode allows its data folder) and registers it.
2. Fires ``--jobs`` POST /v1/jobs at once (at most ``--concurrency`` in flight), with ``--distinct``
   Idempotency-Keys: every key is used at least once and the rest repeat keys at random, in shuffled
   order, so duplicates of one key race each other. A key always carries the same body.
3. Cancels every job it created (POST /v1/jobs/{id}/cancel, concurrently), then waits until every
   one is terminal.
4. Checks: no 5xx anywhere; every submission 201; one job per distinct key (every response for a key
   names the same job, replays say ``Idempotent-Replayed: true``, and the team's job list holds exactly
   one job per key); every job terminal before ``--timeout``. Prints the figures (counts, p50/p99
   latency, wall times) and exits 1 if a check failed.

A job a worker already started goes ``cancelling`` and ends ``cancelled`` once its training stops at
the next step; a job that finished first answers the cancel with 409, which is counted, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DATASET = "burst-toy"
DROPPED = 599  # no HTTP answer at all (connection reset or closed): counted with the server errors


@dataclass
class Call:
    """One HTTP call: what came back and how long it took."""

    status: int
    seconds: float
    body: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False


@dataclass
class BurstReport:
    """The figures of one run and the verdict of each check."""

    submissions: int
    distinct_keys: int
    submit: list[Call]
    submit_wall_s: float
    cancel: list[Call]
    cancel_wall_s: float
    terminal_wall_s: float
    jobs_by_key: dict[str, set[str]]
    listed_per_name: Counter[str]
    final_status: Counter[str]

    @property
    def server_errors(self) -> int:
        return sum(call.status >= 500 for call in self.submit + self.cancel)

    @property
    def submit_failures(self) -> int:
        return sum(call.status != 201 for call in self.submit)

    @property
    def cancel_failures(self) -> int:
        return sum(call.status not in (202, 409) for call in self.cancel)

    @property
    def duplicates(self) -> int:
        """Jobs beyond one per key: several ids answered for one key, or several listed jobs per key."""
        answered = sum(len(ids) - 1 for ids in self.jobs_by_key.values())
        listed = sum(count - 1 for count in self.listed_per_name.values() if count > 1)
        return answered + listed

    @property
    def not_terminal(self) -> int:
        return sum(n for status, n in self.final_status.items() if status not in TERMINAL)

    def checks(self) -> dict[str, bool]:
        return {
            "0 server errors (5xx)": self.server_errors == 0,
            "every submission 201": self.submit_failures == 0,
            "every cancel 202 (or 409: already finished)": self.cancel_failures == 0,
            "0 duplicate jobs (one per distinct key)": self.duplicates == 0
            and len(self.listed_per_name) == self.distinct_keys
            and sum(call.replayed for call in self.submit) == self.submissions - self.distinct_keys,
            "every job terminal": self.not_terminal == 0 and sum(self.final_status.values()) == self.distinct_keys,
        }

    def lines(self) -> list[str]:
        created = sum(call.status == 201 and not call.replayed for call in self.submit)
        replayed = sum(call.replayed for call in self.submit)
        statuses = Counter(call.status for call in self.submit)
        cancels = Counter(call.status for call in self.cancel)
        rate = self.submissions / self.submit_wall_s if self.submit_wall_s else float("inf")
        out = [
            f"submissions            {self.submissions} with {self.distinct_keys} distinct Idempotency-Keys",
            f"  answers              {dict(sorted(statuses.items()))}; created {created}, replayed {replayed}",
            f"  latency              {latency_text(self.submit)}",
            f"  wall time            {self.submit_wall_s:.2f} s ({rate:.0f} submissions/s)",
            f"cancels                {len(self.cancel)}: {dict(sorted(cancels.items()))}",
            f"  latency              {latency_text(self.cancel)}",
            f"  wall time            {self.cancel_wall_s:.2f} s",
            f"all terminal after     {self.terminal_wall_s:.2f} s: {dict(sorted(self.final_status.items()))}",
            f"server errors (5xx)    {self.server_errors}",
            f"duplicate jobs         {self.duplicates}",
        ]
        dropped = Counter(str(call.body.get("error")) for call in self.submit + self.cancel if call.status == DROPPED)
        out += [f"  no answer ({n}x)       {error}" for error, n in dropped.items()]
        out += [f"check: {name}: {'ok' if passed else 'FAILED'}" for name, passed in self.checks().items()]
        return out


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered) - 1e-9)  # the smallest value with at least q of them at or below it
    return ordered[min(len(ordered), max(1, rank)) - 1]


def latency_text(calls: list[Call]) -> str:
    seconds = [call.seconds for call in calls]
    return " ".join(
        f"{name} {percentile(seconds, q) * 1000:.0f} ms" for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
    )


def key_plan(submissions: int, distinct: int, *, seed: int = 0) -> list[int]:
    """Which key each submission uses: every key once, the rest repeats, shuffled so duplicates race."""
    if not 0 < distinct <= submissions:
        raise ValueError(f"--distinct must be between 1 and --jobs ({submissions}), got {distinct}")
    rng = random.Random(seed)
    plan = list(range(distinct)) + [rng.randrange(distinct) for _ in range(submissions - distinct)]
    rng.shuffle(plan)
    return plan


def job_body(run: str, key_index: int) -> dict[str, Any]:
    """The JobSpec a key carries: the smallest job the service accepts (a test ViT, 32 px, two steps)."""
    return {
        "name": f"burst-{run}-{key_index:05d}",
        "teacher": {"model": "test_vit", "weights": "none"},
        "student": {"model": "test_vit", "weights": "none"},
        "source": {"dataset": DATASET, "split": "train"},
        "targets": [{"dataset": DATASET, "split": "val"}],
        "method": "none",
        "stage2": {"steps": 2, "batch_size": 2, "crop_size": 32},
        "resources": {"max_runtime_s": 600},
    }


def write_dataset(root: Path) -> Path:
    """A two-class ``folder`` dataset with train and val splits of two 32 px images each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"names": ["road", "sky"], "ignore_index": 255}))
    for split in ("train", "val"):
        for sub in ("images", "masks"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / "images" / split / f"{i}.png")
            mask = rng.integers(0, 2, (32, 32), dtype=np.uint8)
            Image.fromarray(mask).save(root / "masks" / split / f"{i}.png")
    return root


async def _call(client: httpx.AsyncClient, gate: asyncio.Semaphore, method: str, path: str, **kw: Any) -> Call:
    async with gate:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, **kw)
        except httpx.HTTPError as exc:  # a dropped connection counts as a server error
            return Call(status=DROPPED, seconds=time.perf_counter() - started, body={"error": repr(exc)})
        seconds = time.perf_counter() - started
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text[:200]}
    return Call(response.status_code, seconds, body, response.headers.get("Idempotent-Replayed") == "true")


async def _burst(
    url: str, key: str, *, submissions: int, distinct: int, concurrency: int, timeout_s: float, seed: int
) -> BurstReport:
    run = uuid.uuid4().hex[:8]
    plan = key_plan(submissions, distinct, seed=seed)
    headers = {"Authorization": f"Bearer {key}"}
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them under a request.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)
        started = time.perf_counter()
        submit = await asyncio.gather(
            *(
                _call(
                    client,
                    gate,
                    "POST",
                    "/v1/jobs",
                    json=job_body(run, k),
                    headers={"Idempotency-Key": f"burst-{run}-{k}"},
                )
                for k in plan
            )
        )
        submit_wall = time.perf_counter() - started
        jobs_by_key: dict[str, set[str]] = {}
        for k, call in zip(plan, submit, strict=True):
            if call.status == 201:
                jobs_by_key.setdefault(str(k), set()).add(str(call.body["id"]))
        job_ids = sorted({job_id for ids in jobs_by_key.values() for job_id in ids})

        started = time.perf_counter()
        cancel = await asyncio.gather(*(_call(client, gate, "POST", f"/v1/jobs/{j}/cancel") for j in job_ids))
        cancel_wall = time.perf_counter() - started

        started = time.perf_counter()
        final: dict[str, str] = {}
        while True:
            final = await _statuses(client, f"burst-{run}-")
            if all(status in TERMINAL for status in final.values()) or time.perf_counter() - started > timeout_s:
                break
            await asyncio.sleep(0.5)
        terminal_wall = time.perf_counter() - started
        listed = Counter(name for name in (await _names(client, f"burst-{run}-")))
    return BurstReport(
        submissions=submissions,
        distinct_keys=distinct,
        submit=list(submit),
        submit_wall_s=submit_wall,
        cancel=list(cancel),
        cancel_wall_s=cancel_wall,
        terminal_wall_s=terminal_wall,
        jobs_by_key=jobs_by_key,
        listed_per_name=listed,
        final_status=Counter(final.values()),
    )


async def _listing(client: httpx.AsyncClient, prefix: str) -> list[dict[str, Any]]:
    """Every job of the team whose name starts with ``prefix`` (all pages)."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"page_size": 100, **({"page_token": token} if token else {})}
        page = (await client.get("/v1/jobs", params=params)).raise_for_status().json()
        found += [job for job in page["items"] if str(job["name"]).startswith(prefix)]
        token = page.get("next_page_token")
        if not token:
            return found


async def _statuses(client: httpx.AsyncClient, prefix: str) -> dict[str, str]:
    return {job["id"]: job["status"] for job in await _listing(client, prefix)}


async def _names(client: httpx.AsyncClient, prefix: str) -> list[str]:
    return [job["name"] for job in await _listing(client, prefix)]


def register_dataset(url: str, key: str, root: Path) -> None:
    """Register the toy dataset (201 new, 200 replaced, 202 still validating: wait for it); anything else, or a
    set that ends invalid, stops the bench with the answer."""
    body = {"name": DATASET, "layout": "folder", "uri": write_dataset(root).as_uri()}
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.post(f"{url}/v1/datasets", json=body, headers=headers, timeout=120)
    deadline = time.monotonic() + 120
    while response.status_code in (200, 201, 202) and response.json().get("status") == "validating":
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
        response = httpx.get(f"{url}/v1/datasets/{DATASET}", headers=headers, timeout=30)
    if response.status_code not in (200, 201, 202) or response.json().get("status") != "valid":
        raise SystemExit(f"could not register {DATASET} at {root}: {response.status_code} {response.text[:500]}")


def run_burst(
    url: str,
    key: str,
    dataset_root: Path,
    *,
    submissions: int = 500,
    distinct: int = 400,
    concurrency: int = 64,
    timeout_s: float = 300.0,
    seed: int = 0,
) -> BurstReport:
    """Register the dataset, then submit, cancel and wait; returns the figures."""
    register_dataset(url, key, dataset_root)
    return asyncio.run(
        _burst(
            url,
            key,
            submissions=submissions,
            distinct=distinct,
            concurrency=concurrency,
            timeout_s=timeout_s,
            seed=seed,
        )
    )


@contextmanager
def embedded_service(data_dir: Path, port: int, *, startup_s: float = 180.0) -> Iterator[tuple[str, str]]:
    """``gkd serve`` (API + one worker) over ``data_dir``; yields (url, api key) and stops it afterwards."""
    gkd = Path(sys.executable).parent / "gkd"
    log = data_dir / "serve.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(gkd), "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise SystemExit(f"gkd serve exited with {process.returncode}; see {log}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200 and (data_dir / "api-key").is_file():
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"gkd serve not healthy after {startup_s:.0f} s; see {log}")
            time.sleep(0.5)
        yield url, (data_dir / "api-key").read_text().strip()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--embedded", action="store_true", help="start `gkd serve` in a temporary data folder")
    target.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000 (needs --api-key)")
    parser.add_argument("--api-key", help="a key of the team to load (with --url)")
    parser.add_argument("--dataset-root", type=Path, help="where to write the toy dataset (a root the server allows)")
    parser.add_argument("--data-dir", type=Path, help="--embedded: the data folder (default: a temporary one)")
    parser.add_argument("--jobs", type=int, default=500, help="submissions in the burst")
    parser.add_argument("--distinct", type=int, default=400, help="distinct Idempotency-Keys among them")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight at once")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every job to be terminal")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    options = {
        "submissions": args.jobs,
        "distinct": args.distinct,
        "concurrency": args.concurrency,
        "timeout_s": args.timeout,
        "seed": args.seed,
    }
    key_plan(args.jobs, args.distinct)  # refuse bad counts before starting anything
    if args.embedded:
        scratch = None if args.data_dir else Path(tempfile.mkdtemp(prefix="gkd-burst-"))
        data_dir = args.data_dir or scratch
        assert data_dir is not None
        try:
            with embedded_service(data_dir, _free_port()) as (url, key):
                report = run_burst(url, key, args.dataset_root or data_dir / "datasets" / DATASET, **options)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        where = f"embedded (gkd serve, {data_dir})"
    else:
        if not args.api_key or not args.dataset_root:
            parser.error("--url needs --api-key and --dataset-root")
        report = run_burst(args.url, args.api_key, args.dataset_root, **options)
        where = args.url
    print(f"burst against {where}")
    for line in report.lines():
        print(line)
    return 0 if all(report.checks().values()) else 1


if __name__ == "__main__":
    sys.exit(main())
