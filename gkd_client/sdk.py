"""The GKD Distill Python SDK: a typed, synchronous client for the /v1 REST API.

Example::

    from gkd_client import Client

    with Client() as gkd:                      # GKD_URL and GKD_API_KEY from the environment
        job = gkd.submit_job(spec, idempotency_key="my-run-1")
        job = gkd.wait_for(job, timeout=3600)
        for artifact in gkd.artifacts(job.id):
            gkd.download(artifact, "out/")
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from gkd_client._http import DEFAULT_TIMEOUT, HTTP, raise_for_problem
from gkd_client.errors import ChecksumError, ClientError, NotFoundError, TransportError, WaitTimeout
from gkd_client.models import (
    Artifact,
    ArtifactLink,
    Dataset,
    Evaluation,
    Event,
    Job,
    JobEstimate,
    JobPage,
    MetricPage,
    MetricRow,
    parse_time,
)

_logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "GKD_URL"
KEY_ENV = "GKD_API_KEY"


@dataclass(frozen=True)
class NotifySecret:
    """A team's new notification signing secret (the server shows it once)."""

    secret: str
    header: str
    created_at: datetime | None


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 1 << 16

ProgressFn = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) while a download streams."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class Client:
    """Synchronous client for one GKD Distill server and one team's API key.

    Args:
        base_url: server root such as ``http://127.0.0.1:8000``; default ``$GKD_URL`` or localhost:8000.
        api_key: the team's key; default ``$GKD_API_KEY``.
        timeout: seconds per request (or an ``httpx.Timeout``).
        retries: extra attempts for idempotent calls after connection errors or 429/502/503/504.
        backoff_s: first retry delay; doubles each attempt (capped at 10 s).
        transport: an httpx transport, for tests.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
        if not urlsplit(url).scheme.startswith("http"):
            raise ClientError(f"the server URL must start with http:// or https://, got {url!r}")
        self.api_key = api_key if api_key is not None else os.environ.get(KEY_ENV)
        self._timeout = timeout
        self.http = HTTP(url, self.api_key, timeout=timeout, retries=retries, backoff_s=backoff_s, transport=transport)

    @property
    def base_url(self) -> str:
        return self.http.base_url

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ----- jobs -----------------------------------------------------------------------------

    def submit_job(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """POST a JobSpec. With an idempotency key the call is retried safely and replays the same job
        (``Job.replayed`` is then True: the key had created it before, whatever its status now)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self.http.send("POST", "/v1/jobs", json=dict(spec), headers=headers)
        try:
            job = Job.from_obj(response.json())
        except ValueError as exc:
            raise TransportError("POST /v1/jobs: the server answered with non-JSON content") from exc
        job.replayed = response.headers.get("Idempotent-Replayed") == "true"
        return job

    def estimate_job(self, spec: Mapping[str, Any], *, gpu_kinds: Sequence[str] | None = None) -> JobEstimate:
        """What a JobSpec would cost (steps, FLOPs, peak memory, GPU-hours per kind), validated like a submit;
        nothing is stored or queued."""
        params = {"gpu_kind": list(gpu_kinds)} if gpu_kinds else None
        body = self.http.json("POST", "/v1/jobs:estimate", json=dict(spec), params=params)
        return JobEstimate.from_obj(body)

    def list_jobs(
        self,
        *,
        status: str | None = None,
        method: str | None = None,
        created_after: datetime | str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> JobPage:
        """One page of the team's jobs, newest first."""
        after = created_after.isoformat() if isinstance(created_after, datetime) else created_after
        params = {
            "status": status,
            "method": method,
            "created_after": after,
            "page_size": page_size,
            "page_token": page_token,
        }
        return JobPage.from_obj(self.http.json("GET", "/v1/jobs", params=params))

    def iter_jobs(self, *, page_size: int = 100, **filters: Any) -> Iterator[Job]:
        """Every job matching the filters, following ``next_page_token`` across pages."""
        token: str | None = None
        while True:
            page = self.list_jobs(page_size=page_size, page_token=token, **filters)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def get_job(self, job_id: str) -> Job:
        """Current status, phase, progress, ETA, spec, error and summary."""
        return Job.from_obj(self.http.json("GET", f"/v1/jobs/{job_id}"))

    def cancel_job(self, job_id: str) -> Job:
        """Ask the job to stop (202). Raises ConflictError if it already finished."""
        body = self.http.json("POST", f"/v1/jobs/{job_id}/cancel")
        if isinstance(body, dict) and "id" in body and "status" in body:
            return Job.from_obj(body)
        return self.get_job(job_id)

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job's artifacts and checkpoints; the job then reads as missing (idempotent)."""
        self.http.send("DELETE", f"/v1/jobs/{quote(job_id, safe='')}")

    def logs(self, job_id: str) -> list[tuple[int, int]]:
        """``(attempt, bytes)`` of each stored training log, oldest attempt first."""
        body = self.http.json("GET", f"/v1/jobs/{quote(job_id, safe='')}/logs")
        return [(int(item["attempt"]), int(item["size"])) for item in _items(body)]

    def log(self, job_id: str, attempt: int | None = None, *, tail_lines: int | None = None) -> str:
        """One attempt's training log (the latest stored when ``attempt`` is None), tracebacks included.

        Raises:
            NotFoundError: no such job, or no log stored for it (yet).
        """
        if attempt is None:
            stored = self.logs(job_id)
            if not stored:
                raise NotFoundError(status=404, title="Not Found", detail=f"job {job_id} has no training log yet")
            attempt = stored[-1][0]
        path = f"/v1/jobs/{quote(job_id, safe='')}/logs/{attempt}"
        return self.http.send("GET", path, params={"tail_lines": tail_lines}).text

    def events(self, job_id: str) -> list[Event]:
        """The job's lifecycle history, oldest first."""
        return [Event.from_obj(e) for e in _items(self.http.json("GET", f"/v1/jobs/{job_id}/events"))]

    def metrics(self, job_id: str, *, since_step: int | None = None, stage: str | None = None) -> list[MetricRow]:
        """One page of logged loss rows in step order; ``stage`` keeps one stage (each counts its steps from 1),
        ``since_step`` only rows with a larger step. :meth:`all_metrics` reads every row of a long job."""
        params = {"since_step": since_step, "stage": stage}
        body = self.http.json("GET", f"/v1/jobs/{job_id}/metrics", params=params)
        return [MetricRow.from_obj(r) for r in _items(body)]

    def metric_page(
        self,
        job_id: str,
        *,
        after: int | None = None,
        tail: int | None = None,
        stage: str | None = None,
        limit: int | None = None,
    ) -> MetricPage:
        """Rows in the order they were written after cursor ``after`` (0: from the start), or the last
        ``tail`` rows; follow a job by passing ``next_after`` back."""
        if (after is None) == (tail is None):
            raise ClientError("give exactly one of after (a cursor, 0 for the start) or tail (a row count)")
        params = {"after": after, "tail": tail, "stage": stage, "limit": limit}
        return MetricPage.from_obj(self.http.json("GET", f"/v1/jobs/{job_id}/metrics", params=params))

    def all_metrics(self, job_id: str, *, stage: str | None = None) -> list[MetricRow]:
        """Every logged row of the job (or of one ``stage``), page after page, in the order written."""
        rows: list[MetricRow] = []
        cursor = 0
        while True:
            page = self.metric_page(job_id, after=cursor, stage=stage)
            rows.extend(page.rows)
            if not page.more or page.next_after is None:
                return rows
            cursor = page.next_after

    def wait_for(
        self,
        job: Job | str,
        *,
        timeout: float | None = None,
        poll_s: float = 2.0,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job is succeeded, failed or cancelled and return it (it does not raise on failure).

        Raises:
            WaitTimeout: ``timeout`` seconds passed first.
        """
        job_id = job.id if isinstance(job, Job) else job
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get_job(job_id)
            if on_update is not None:
                on_update(current)
            if current.terminal:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} is still {current.status} after {timeout:g} s")
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))

    # ----- artifacts ------------------------------------------------------------------------

    def artifacts(self, job_id: str) -> list[Artifact]:
        """The job's stored outputs with size and sha256."""
        body = self.http.json("GET", f"/v1/jobs/{job_id}/artifacts")
        return [Artifact.from_obj(a, job_id) for a in _items(body)]

    def artifact(self, job_id: str, name: str) -> Artifact:
        """Look one artifact up by name (raises ClientError naming the ones that exist)."""
        found = self.artifacts(job_id)
        for artifact in found:
            if artifact.name == name:
                return artifact
        names = ", ".join(a.name for a in found) or "none yet"
        raise ClientError(f"job {job_id} has no artifact {name!r} (artifacts: {names})")

    def artifact_link(self, job_id: str, name: str) -> ArtifactLink:
        """A URL for one artifact that can be handed on: presigned (no key needed, until ``expires_at``)
        where the server stores artifacts in S3; otherwise the download route, which needs the key."""
        body = self.http.json("GET", f"/v1/jobs/{quote(job_id, safe='')}/artifacts/{quote(name)}:link")
        link = ArtifactLink.from_obj(body)
        if link.url.startswith("/"):  # the server's own route, under whatever prefix base_url carries
            link.url = self.base_url.rstrip("/") + link.url
        return link

    def download(
        self,
        artifact: Artifact,
        path: str | Path,
        *,
        progress: ProgressFn | None = None,
        verify: bool = True,
    ) -> Path:
        """Stream an artifact to ``path`` (a file, or a directory to put ``artifact.name`` in).

        Follows the API's redirect to a presigned URL without sending the API key to the other
        host, writes to ``<path>.part`` and renames only after the sha256 matches.

        Raises:
            ChecksumError: the bytes differ from ``artifact.sha256`` (the partial file is removed).
        """
        dest = Path(path)
        if dest.is_dir():
            dest = dest / artifact.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        url = f"{self.base_url}/v1/jobs/{artifact.job_id}/artifacts/{artifact.name}"
        attempts = 1 + self.http.retries
        for attempt in range(attempts):
            try:
                digest = self._stream_to(url, part, artifact.size, progress)
                break
            except TransportError:
                part.unlink(missing_ok=True)
                if attempt + 1 >= attempts:
                    raise
                time.sleep(self.http.backoff_s * (2**attempt))
        if verify and artifact.sha256 and digest != artifact.sha256.lower():
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{artifact.name}: sha256 {digest} does not match the listed {artifact.sha256}; file removed"
            )
        part.replace(dest)
        return dest

    def _stream_to(self, url: str, part: Path, size: int | None, progress: ProgressFn | None) -> str:
        api_origin = _origin(self.base_url)
        for _ in range(6):
            same_host = _origin(url) == api_origin
            # A presigned URL on another host must not see our key: use a bare client there.
            client = self.http.client if same_host else httpx.Client(timeout=self._timeout, follow_redirects=False)
            try:
                with client.stream("GET", url) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code >= 400:
                        response.read()
                        raise_for_problem(response)
                    total = _int_or_none(response.headers.get("content-length")) or size
                    sha = hashlib.sha256()
                    done = 0
                    with part.open("wb") as handle:
                        for chunk in response.iter_bytes(_CHUNK):
                            handle.write(chunk)
                            sha.update(chunk)
                            done += len(chunk)
                            if progress is not None:
                                progress(done, total)
                    return sha.hexdigest()
            except httpx.TransportError as exc:
                raise TransportError(
                    f"download from {urlsplit(url).netloc} failed: {exc or type(exc).__name__}"
                ) from exc
            finally:
                if not same_host:
                    client.close()
        raise ClientError("too many redirects while downloading the artifact")

    # ----- evaluations ----------------------------------------------------------------------

    def evaluate(self, job_id: str, targets: Sequence[Mapping[str, Any]]) -> Evaluation:
        """Start evaluating the job's student on more domains: ``[{"dataset": ..., "split": ...}]``."""
        body = self.http.json("POST", f"/v1/jobs/{job_id}/evaluations", json={"targets": [dict(t) for t in targets]})
        return Evaluation.from_obj(body)

    def list_evaluations(
        self, *, job_id: str | None = None, status: str | Sequence[str] | None = None, limit: int | None = None
    ) -> list[Evaluation]:
        """The team's evaluations (or one job's), newest first; ``status`` filters (team-wide list only)."""
        if job_id is not None:
            if status is not None or limit is not None:
                raise ClientError("status and limit filter the team-wide list; leave out job_id to use them")
            return [Evaluation.from_obj(e) for e in _items(self.http.json("GET", f"/v1/jobs/{job_id}/evaluations"))]
        statuses = [status] if isinstance(status, str) else list(status) if status is not None else None
        body = self.http.json("GET", "/v1/evaluations", params={"status": statuses, "limit": limit})
        return [Evaluation.from_obj(e) for e in _items(body)]

    def get_evaluation(self, evaluation_id: str) -> Evaluation:
        """Status and per-domain results of an evaluation."""
        return Evaluation.from_obj(self.http.json("GET", f"/v1/evaluations/{evaluation_id}"))

    def cancel_evaluation(self, evaluation_id: str) -> Evaluation:
        """Ask the evaluation to stop (202): at once when queued, before its next target when running.

        Raises ConflictError if it already finished.
        """
        return Evaluation.from_obj(self.http.json("POST", f"/v1/evaluations/{evaluation_id}/cancel"))

    def wait_for_evaluation(
        self, evaluation: Evaluation | str, *, timeout: float | None = None, poll_s: float = 2.0
    ) -> Evaluation:
        """Poll an evaluation until it is terminal (raises WaitTimeout past ``timeout``)."""
        eval_id = evaluation.id if isinstance(evaluation, Evaluation) else evaluation
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get_evaluation(eval_id)
            if current.terminal:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"evaluation {eval_id} is still {current.status} after {timeout:g} s")
            time.sleep(poll_s)

    # ----- catalogue ------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The curated teacher/student zoo."""
        return list(_items(self.http.json("GET", "/v1/models")))

    def datasets(self) -> list[dict[str, Any]]:
        """The team's registered datasets as the API's JSON (``list_datasets`` gives typed ones)."""
        return list(_items(self.http.json("GET", "/v1/datasets")))

    def list_datasets(self) -> list[Dataset]:
        """The team's registered datasets by name, each with its status and validation report."""
        return [Dataset.from_obj(d) for d in self.datasets()]

    def get_dataset(self, name: str) -> Dataset:
        """One dataset and its validation report (raises NotFoundError for a name not registered)."""
        return Dataset.from_obj(self.http.json("GET", f"/v1/datasets/{quote(name, safe='')}"))

    def delete_dataset(self, name: str) -> None:
        """Forget a registration (the files stay) and stop its validation.

        Raises:
            NotFoundError: no dataset of that name.
            ConflictError: a queued or running job or evaluation reads it (the message names them).
        """
        self.http.send("DELETE", f"/v1/datasets/{quote(name, safe='')}")

    def register_dataset(
        self,
        name: str,
        *,
        layout: str,
        uri: str,
        classes: Sequence[str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register (or re-validate) a dataset; returns the API's JSON with its validation report and status.

        A set the server could not validate within its wait comes back with status ``validating``: follow it
        with :meth:`wait_for_dataset`.

        ``Dataset.from_obj(result)`` gives the typed view. ``options`` are layout options (e.g. ACDC's
        ``condition``); they are sent only when given, and a server that does not take them answers 422.
        """
        body: dict[str, Any] = {"name": name, "layout": layout, "uri": uri}
        if classes is not None:
            body["classes"] = list(classes)
        if options:
            body["options"] = dict(options)
        return dict(self.http.json("POST", "/v1/datasets", json=body))

    def wait_for_dataset(
        self,
        name: str,
        *,
        timeout: float | None = None,
        poll_s: float = 2.0,
        on_update: Callable[[Dataset], None] | None = None,
    ) -> Dataset:
        """Poll a dataset until its validation has ended (``valid`` or ``invalid``), and return it.

        Raises:
            WaitTimeout: still validating after ``timeout`` seconds (it goes on on the server).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get_dataset(name)
            if on_update is not None:
                on_update(current)
            if not current.validating:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"dataset {name} is still validating after {timeout:g} s")
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))

    # ----- keys -----------------------------------------------------------------------------

    def keys(self, *, team: str | None = None) -> list[dict[str, Any]]:
        """API keys this key may see (prefix, team, admin, created_at, revoked_at; never secrets)."""
        return list(_items(self.http.json("GET", "/v1/keys", params={"team": team})))

    def revoke_key(self, prefix: str) -> None:
        """Revoke a key by its prefix (idempotent: a revoked key stays revoked)."""
        self.http.send("DELETE", f"/v1/keys/{quote(prefix, safe='')}")

    # ----- notifications --------------------------------------------------------------------

    def rotate_notify_secret(self) -> NotifySecret:
        """Create or replace the team's notification signing secret; the answer is the only time it is shown.

        The old secret stops signing at once. Receivers check requests with ``verify_signature``.
        """
        body = self.http.json("POST", "/v1/notify-secret")
        created_at = parse_time(body.get("created_at"))
        return NotifySecret(secret=body["secret"], header=body["header"], created_at=created_at)


def _items(body: Any) -> list[Any]:
    """Lists come bare or wrapped as ``{items: [...]}`` / ``{rows: [...]}``; accept each."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("items", "rows", "events", "metrics", "artifacts", "results"):
            if isinstance(body.get(key), list):
                return list(body[key])
    return []


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
