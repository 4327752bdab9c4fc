"""Job commands of the ``gkd`` CLI (submit, list, status, watch, events, cancel, download, eval, cancel-eval).

Every command reads the server URL and key from ``--url``/``--api-key`` or ``GKD_URL``/``GKD_API_KEY``,
prints rich tables (or ``--json`` for scripts) and turns any failure into one line on stderr.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

import gkd_catalog
from gkd_cli import output
from gkd_cli.compare import compare as build_comparison
from gkd_cli.compare import comparison_table
from gkd_cli.estimate_view import estimate_views
from gkd_cli.remote import JsonOpt, KeyOpt, UrlOpt, one_line_errors
from gkd_cli.remote import client as _client
from gkd_client import ArtifactLink, Client, ClientError, Evaluation, Job, MetricRow

PHASES = ("stage1", "stage2", "references", "evaluating", "exporting")
WATCH_TAIL_ROWS = 200  # a watch joining a long job starts from its latest rows, not its first
WATCH_PAGES_PER_POLL = 5
EXIT_FAILED = 1
EXIT_CANCELLED = 3
EXIT_TIMEOUT = 4

# ----- spec files ----------------------------------------------------------------------------


def load_spec(path: Path) -> dict[str, Any]:
    """Read a JobSpec from a JSON or YAML file; raise ClientError with the file and position."""
    if not path.exists():
        raise ClientError(f"spec file not found: {path}")
    if path.is_dir():
        raise ClientError(f"spec path is a directory, not a file: {path}")
    text = path.read_text(encoding="utf-8")
    data: Any
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ClientError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ClientError(f"{path}: invalid YAML{where}: {problem}") from exc
    if not isinstance(data, dict):
        raise ClientError(f"{path}: a job spec must be a mapping of fields, got {type(data).__name__}")
    return data


def spec_idempotency_key(spec: dict[str, Any]) -> str:
    """A key derived from the spec's content, so resubmitting the same file never creates a second job."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "spec-sha256-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


def _parse_target(text: str) -> dict[str, str]:
    dataset, _, split = text.partition(":")
    if not dataset:
        raise ClientError(f"bad --target {text!r}: use DATASET or DATASET:SPLIT")
    return {"dataset": dataset, "split": split or "val"}


# ----- watch ---------------------------------------------------------------------------------


class _Watcher:
    """Keeps one progress bar per phase and the latest value of every loss."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.latest: dict[tuple[str, str], MetricRow] = {}
        self.after: int | None = None  # the metrics cursor: None until the first poll

    def update_job(self, job: Job) -> None:
        phase = job.phase
        if phase and phase not in self.tasks:
            for earlier, task in self.tasks.items():  # a new phase means the earlier ones ended
                if earlier != phase:
                    self.progress.update(task, completed=1.0, eta="done")
            self.tasks[phase] = self.progress.add_task(phase, total=1.0, eta="-")
        if phase:
            eta = output.duration(job.eta_s) if job.eta_s is not None else "-"
            self.progress.update(self.tasks[phase], completed=min(1.0, job.progress), eta=eta)
        if job.status == "succeeded":
            for task in self.tasks.values():
                self.progress.update(task, completed=1.0, eta="done")

    def update_metrics(self, rows: list[MetricRow]) -> None:
        for row in rows:
            self.latest[(row.stage, row.name)] = row

    def poll_metrics(self, client: Client, job_id: str) -> None:
        """The rows written since the last poll (the last few at first): the cursor never re-reads a row."""
        if self.after is None:
            page = client.metric_page(job_id, tail=WATCH_TAIL_ROWS)
            self.update_metrics(page.rows)
            self.after = page.next_after
            return
        for _ in range(WATCH_PAGES_PER_POLL):
            page = client.metric_page(job_id, after=self.after)
            self.update_metrics(page.rows)
            self.after = page.next_after if page.next_after is not None else self.after
            if not page.more:
                return

    def losses(self) -> Table:
        table = Table(header_style="bold", title="latest losses")
        for column in ("stage", "name", "step", "value"):
            table.add_column(column, justify="right" if column in ("step", "value") else "left")
        for (stage, name), row in sorted(self.latest.items()):
            table.add_row(escape(stage), escape(name), str(row.step), f"{row.value:.4g}")
        return table


def _watch_group(progress: Progress, watcher: _Watcher, job: Job) -> Table:
    grid = Table.grid()
    grid.add_row(f"job [bold]{escape(job.id)}[/] {escape(job.name or '')}: {output.status_text(job.status)}")
    grid.add_row(progress)
    if watcher.latest:
        grid.add_row(watcher.losses())
    return grid


def _exit_code(job: Job) -> int:
    if job.status == "succeeded":
        return 0
    return EXIT_CANCELLED if job.status == "cancelled" else EXIT_FAILED


# ----- commands ------------------------------------------------------------------------------


METHOD_HELP = f"One of: {', '.join(gkd_catalog.METHODS)}."
CATALOG_EPILOG = (
    f"Methods: {', '.join(gkd_catalog.METHODS)}. Stage-2 heads: {', '.join(gkd_catalog.HEADS)}. "
    f"Stage-1 heads: {', '.join(gkd_catalog.STAGE1_HEADS)}. References: {', '.join(gkd_catalog.REFERENCES)}. "
    "What each does: docs/CATALOG.md or GET /v1/catalog."
)


def register(app: typer.Typer) -> None:
    """Add the job commands to the root app."""

    @app.command(epilog=CATALOG_EPILOG)
    @one_line_errors
    def submit(
        spec_file: Annotated[Path, typer.Argument(help="JobSpec as JSON or YAML.", show_default=False)],
        idempotency_key: Annotated[
            str | None,
            typer.Option("--idempotency-key", help="Override the key derived from the spec's content."),
        ] = None,
        name: Annotated[str | None, typer.Option("--name", help="Override the spec's name.")] = None,
        new: Annotated[
            bool,
            typer.Option(
                "--new", help="Submit again as a new job, even if this spec was submitted before (e.g. it failed)."
            ),
        ] = False,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Validate and estimate instead: steps, FLOPs, peak memory and GPU-hours per stage; "
                "nothing is submitted.",
            ),
        ] = False,
        gpu_kind: Annotated[
            list[str] | None,
            typer.Option("--gpu-kind", help="With --dry-run: GPU kinds to price (repeat); default every measured."),
        ] = None,
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Submit a job from a spec file (resubmitting the same file returns the same job; --new runs it again)."""
        spec = load_spec(spec_file)
        if name:
            spec["name"] = name
        if dry_run:
            with _client(url, api_key) as client:
                estimate = client.estimate_job(spec, gpu_kinds=gpu_kind)
            if as_json:
                output.emit_json(estimate.raw)
                return
            for view in estimate_views(estimate):
                output.console.print(view)
            return
        if new and idempotency_key:
            raise ClientError("--new and --idempotency-key cannot be combined: --new picks a fresh key")
        key = idempotency_key or spec_idempotency_key(spec)
        if new:
            key += "-" + uuid.uuid4().hex[:12]
        with _client(url, api_key) as client:
            job = client.submit_job(spec, idempotency_key=key)
        if as_json:
            output.emit_json(job.raw)
            return
        if job.replayed:
            output.console.print(
                f"already submitted as job [bold]{escape(job.id)}[/] ({output.status_text(job.status)}); "
                "nothing new was queued"
            )
            if job.status in ("failed", "cancelled"):
                again = f"gkd submit {spec_file} --new" + (f" --name {name}" if name else "")
                output.console.print(f"to run this spec again: {escape(again)}", style="dim")
            return
        output.console.print(f"submitted job [bold]{escape(job.id)}[/] ({output.status_text(job.status)})")
        output.console.print(f"watch it with: gkd watch {escape(job.id)}", style="dim")

    @app.command("list")
    @one_line_errors
    def list_jobs(
        status: Annotated[str | None, typer.Option("--status", help="queued, running, succeeded, ...")] = None,
        method: Annotated[str | None, typer.Option("--method", help=METHOD_HELP)] = None,
        created_after: Annotated[str | None, typer.Option("--created-after", help="ISO 8601 time.")] = None,
        page_size: Annotated[int, typer.Option("--page-size", min=1, max=100)] = 20,
        page_token: Annotated[str | None, typer.Option("--page-token", help="From a previous page.")] = None,
        all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List the team's jobs, newest first."""
        filters: dict[str, Any] = {"status": status, "method": method, "created_after": created_after}
        with _client(url, api_key) as client:
            if all_pages:
                jobs, token = list(client.iter_jobs(page_size=page_size, **filters)), None
            else:
                page = client.list_jobs(page_size=page_size, page_token=page_token, **filters)
                jobs, token = page.items, page.next_page_token
        if as_json:
            output.emit_json({"items": [j.raw for j in jobs], "next_page_token": token})
            return
        output.console.print(output.jobs_table(jobs))
        if token:
            output.console.print(f"more: gkd list --page-token {escape(token)}", style="dim", soft_wrap=True)

    @app.command()
    @one_line_errors
    def status(
        job_id: Annotated[str, typer.Argument(help="Job id.")],
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show a job: status, phase, progress, ETA, error, its training plan (steps per stage) and per-domain mIoU."""
        with _client(url, api_key) as client:
            job = client.get_job(job_id)
        if as_json:
            output.emit_json(job.raw)
            return
        output.console.print(output.job_table(job))
        plan = output.plan_table(job.raw.get("plan"))
        if plan is not None:
            output.console.print(plan)
        scores = output.scores_table(job.summary)
        if scores is not None:
            output.console.print(scores)

    @app.command()
    @one_line_errors
    def delete(
        job_id: Annotated[str, typer.Argument(help="Job id.")],
        url: UrlOpt = None,
        api_key: KeyOpt = None,
    ) -> None:
        """Delete a finished job: its artifacts and checkpoints leave storage (cancel a running job first)."""
        with _client(url, api_key) as client:
            client.delete_job(job_id)
        output.console.print(f"deleted job {escape(job_id)}")

    @app.command()
    @one_line_errors
    def watch(
        job_id: Annotated[str, typer.Argument(help="Job id.")],
        poll: Annotated[float, typer.Option("--poll", min=0.05, help="Seconds between polls.")] = 2.0,
        timeout: Annotated[float | None, typer.Option("--timeout", help="Give up after this many seconds.")] = None,
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Follow a job live: a bar per phase with ETA and the latest losses.

        Exit status: 0 succeeded, 1 failed, 3 cancelled, 4 timed out.
        """
        progress = Progress(
            TextColumn("{task.description:>11}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("eta {task.fields[eta]}"),
            console=output.console,
        )
        watcher = _Watcher(progress)
        deadline = None if timeout is None else time.monotonic() + timeout
        with _client(url, api_key) as client:
            job = client.get_job(job_id)
            with Live(_watch_group(progress, watcher, job), console=output.console, transient=as_json) as live:
                while True:
                    watcher.update_job(job)
                    watcher.poll_metrics(client, job_id)
                    live.update(_watch_group(progress, watcher, job))
                    if job.terminal:
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        output.fail(f"job {job_id} is still {job.status} after {timeout:g} s", code=EXIT_TIMEOUT)
                    time.sleep(poll)
                    job = client.get_job(job_id)
        if as_json:
            output.emit_json(job.raw)
        else:
            scores = output.scores_table(job.summary)
            if scores is not None:
                output.console.print(scores)
            if job.status != "succeeded":
                reason = f" ({job.error_reason})" if job.error_reason else ""
                detail = f": {job.error_detail}" if job.error_detail else ""
                line = escape(f"job {job.id} {job.status}{reason}{detail}")
                output.err_console.print(line, soft_wrap=True, highlight=False)
        raise typer.Exit(_exit_code(job))

    @app.command()
    @one_line_errors
    def events(
        job_id: Annotated[str, typer.Argument(help="Job id.")],
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show a job's lifecycle history."""
        with _client(url, api_key) as client:
            rows = client.events(job_id)
        if as_json:
            output.emit_json([e.raw for e in rows])
            return
        output.console.print(output.events_table(rows))

    @app.command()
    @one_line_errors
    def logs(
        job_id: Annotated[str, typer.Argument(help="Job id.")],
        attempt: Annotated[int | None, typer.Option("--attempt", min=1, help="Default: the latest stored.")] = None,
        tail: Annotated[int | None, typer.Option("--tail", min=0, help="Only the last N lines.")] = None,
        list_only: Annotated[bool, typer.Option("--list", help="List the stored logs instead.")] = False,
        url: UrlOpt = None,
        api_key: KeyOpt = None,
    ) -> None:
        """Print what a job's training printed (tracebacks included), one log per attempt."""
        with _client(url, api_key) as client:
            if list_only:
                for number, size in client.logs(job_id):
                    output.console.print(f"attempt {number}: {size} bytes")
                return
            text = client.log(job_id, attempt, tail_lines=tail)
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")

    @app.command()
    @one_line_errors
    def cancel(
        job_id: Annotated[str, typer.Argument(help="Job id.")],
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Ask a job to stop (a queued job stops at once, a running one within seconds)."""
        with _client(url, api_key) as client:
            job = client.cancel_job(job_id)
        if as_json:
            output.emit_json(job.raw)
            return
        output.console.print(f"job [bold]{escape(job.id)}[/]: {output.status_text(job.status)}")

    @app.command()
    @one_line_errors
    def download(
        job_id: Annotated[str, typer.Argument(help="Job id.")],
        name: Annotated[str | None, typer.Argument(help="Artifact name; omit to list them.")] = None,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="File or directory to write [default: .].")
        ] = None,
        link: Annotated[
            bool,
            typer.Option("--link", help="Print a URL to hand on instead of downloading (presigned: no key needed)."),
        ] = False,
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Download an artifact with a progress bar and sha256 verification (no NAME: list artifacts)."""
        if link and (name is None or out is not None):
            output.fail("--link needs an artifact NAME and writes no file (drop --out)", code=2)
        with _client(url, api_key) as client:
            if name is None:
                items = client.artifacts(job_id)
                if as_json:
                    output.emit_json([dataclass_json(a) for a in items])
                else:
                    output.console.print(output.artifacts_table(items))
                return
            if link:
                _print_link(client.artifact_link(job_id, name), as_json)
                return
            artifact = client.artifact(job_id, name)
            bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=output.err_console,
                disable=as_json,
            )
            with bar:
                task = bar.add_task(escape(artifact.name), total=artifact.size)
                path = client.download(
                    artifact,
                    out or Path("."),
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        if as_json:
            output.emit_json({"path": str(path), "sha256": artifact.sha256, "size": path.stat().st_size})
            return
        output.console.print(f"saved {escape(str(path))} (sha256 verified)")

    @app.command()
    @one_line_errors
    def compare(
        job_ids: Annotated[list[str], typer.Argument(help="Job ids (two or more to compare).", show_default=False)],
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Compare jobs per domain: each job's student mIoU, the reference rows, and ONNX parity when reported."""
        unique = list(dict.fromkeys(job_ids))
        with _client(url, api_key) as client:
            jobs = [client.get_job(job_id) for job_id in unique]
        result = build_comparison(jobs)
        if as_json:
            output.emit_json(result.to_json())
            return
        legend = Table(header_style="bold", title="jobs")
        for column in ("job", "id", "status", "method"):
            legend.add_column(column, no_wrap=column == "id")
        for job in jobs:
            legend.add_row(
                escape(result.label(job.id)), escape(job.id), output.status_text(job.status), escape(job.method or "-")
            )
        output.console.print(legend)
        if not result.rows:
            output.fail("none of these jobs has per-domain scores yet (they appear when a job succeeds)")
        output.console.print(comparison_table(result))
        for job in result.without_scores:
            output.console.print(f"{escape(result.label(job.id))}: no scores yet ({job.status})", style="dim")

    @app.command("eval")
    @one_line_errors
    def evaluate(
        job_id: Annotated[str, typer.Argument(help="Job id.")],
        target: Annotated[
            list[str], typer.Option("--target", "-t", help="DATASET[:SPLIT] (default split val); repeat.")
        ],
        wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the results.")] = True,
        poll: Annotated[float, typer.Option("--poll", min=0.05)] = 2.0,
        timeout: Annotated[float | None, typer.Option("--timeout")] = None,
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Evaluate a job's student on more domains and print per-domain mIoU."""
        targets = [_parse_target(t) for t in target]
        with _client(url, api_key) as client:
            evaluation = client.evaluate(job_id, targets)
            if wait:
                evaluation = client.wait_for_evaluation(evaluation, timeout=timeout, poll_s=poll)
        if as_json:
            output.emit_json(evaluation.raw)
        elif evaluation.results:
            output.console.print(output.results_table(evaluation.results))
        else:
            output.console.print(
                f"evaluation [bold]{escape(evaluation.id)}[/]: {output.status_text(evaluation.status)}"
            )
        if evaluation.status == "failed":
            output.fail(f"evaluation {evaluation.id} failed: {evaluation.error or 'no detail'}")

    @app.command("evals")
    @one_line_errors
    def list_evaluations(
        job_id: Annotated[str | None, typer.Option("--job", help="Only this job's.")] = None,
        status: Annotated[list[str] | None, typer.Option("--status", help="queued, running, ...; repeat.")] = None,
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List evaluations, newest first: id, job, status, targets, attempt, error."""
        if job_id and status:
            raise ClientError("--status filters the team's list; leave out --job to use it")
        with _client(url, api_key) as client:
            rows = client.list_evaluations(job_id=job_id) if job_id else client.list_evaluations(status=status)
        if as_json:
            output.emit_json({"items": [e.raw for e in rows]})
            return
        if not rows:
            output.console.print("no evaluations", style="dim")
            return
        table = Table(header_style="bold")
        for column in ("id", "job", "status", "targets", "attempt", "error"):
            table.add_column(column)
        for e in rows:
            targets = ", ".join(f"{t.get('dataset')}:{t.get('split')}" for t in e.targets)
            error = f"{e.error_reason}: {e.error}" if e.error_reason and e.error else e.error or ""
            table.add_row(escape(e.id), escape(e.job_id or ""), output.status_text(e.status), escape(targets),
                          str(e.attempt), escape(error))  # fmt: skip
        output.console.print(table)

    @app.command("show-eval")
    @one_line_errors
    def show_evaluation(
        evaluation_id: Annotated[str, typer.Argument(help="Evaluation id.")],
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """An evaluation's status and, once scored, its per-domain mIoU (after gkd eval --no-wait)."""
        with _client(url, api_key) as client:
            _print_evaluation(client.get_evaluation(evaluation_id), as_json)

    @app.command("cancel-eval")
    @one_line_errors
    def cancel_evaluation(
        evaluation_id: Annotated[str, typer.Argument(help="Evaluation id.")],
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Ask an evaluation to stop (a queued one stops at once, a running one before its next target)."""
        with _client(url, api_key) as client:
            _print_evaluation(client.cancel_evaluation(evaluation_id), as_json)


def _print_evaluation(evaluation: Evaluation, as_json: bool) -> None:
    """Its status line, then its per-domain mIoU once scored and its error if it failed."""
    if as_json:
        output.emit_json(evaluation.raw)
        return
    output.console.print(f"evaluation [bold]{escape(evaluation.id)}[/]: {output.status_text(evaluation.status)}")
    if evaluation.results:
        output.console.print(output.results_table(evaluation.results))
    if evaluation.error:
        output.console.print(f"{evaluation.error_reason or 'error'}: {escape(evaluation.error)}", style="red")


def _print_link(link: ArtifactLink, as_json: bool) -> None:
    """The URL alone on stdout (for scripts), and on stderr what it takes to open it."""
    if as_json:
        output.emit_json(dataclass_json(link))
        return
    output.emit_line(link.url)
    if link.requires_key:
        output.err_console.print("this server keeps artifacts without URLs: send the API key (Authorization: Bearer)")
    elif link.expires_at is not None:
        output.err_console.print(
            f"anyone with this URL can download {escape(link.name)} until {link.expires_at:%Y-%m-%d %H:%M} UTC"
        )


def dataclass_json(value: Any) -> Any:
    """Dataclass to JSON-ready dict (datetimes as ISO strings)."""
    return json.loads(json.dumps(value, default=output.json_default))
