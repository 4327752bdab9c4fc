"""Dataset validation that may outlast the request that asked for it.

Reading every header of an ImageNet-size set takes about a minute even from the page cache (30,000
JPEGs: 1.35 s on the build machine) and far longer from cold disks, and an s3:// set is downloaded
first: more than an HTTP client or proxy waits. So each registration is validated in a small thread
pool of the API process; the request waits up to ``Settings.dataset_inline_validation_s`` and, for a
set that takes longer, stores the row as ``validating`` and answers 202. The pool writes the outcome
when it ends, unless the name was registered again meanwhile (each registration's placeholder report
carries its own ``validation_id``), and a validation whose name is registered again or deleted is
stopped at its next file (``ValidationStopped``), so it frees its thread instead of finishing work
nobody reads. Rows still ``validating`` when an API process starts lost the pool that was validating
them, so it validates them again (:meth:`DatasetValidator.resume`).
"""

from __future__ import annotations

import collections
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service import datasets
from service.auth import team_name
from service.db import session_scope
from service.errors import Conflict, TooManyRequests
from service.models import Dataset
from service.schemas import DatasetCreate
from service.settings import Settings

_logger = logging.getLogger(__name__)


class _DaemonPool:
    """A few daemon threads taking calls from a queue. ThreadPoolExecutor's threads are joined when the
    interpreter exits, so a validation under way (minutes, for a download) would hold up a stopping API;
    these are not, and the row they leave ``validating`` is resumed at the next start."""

    def __init__(self, threads: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, call))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # the future carries it to whoever waits
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self) -> None:
        """Cancel what has not started and let the threads end after their current call."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)


@dataclass(frozen=True)
class _Running:
    """A validation in this process and the flag that stops it at its next file."""

    future: Future[Any]
    stop: threading.Event

    def abandon(self) -> None:
        self.future.cancel()  # still queued: never starts
        self.stop.set()  # already running: ends at its next file


def _stopper(stop: threading.Event) -> Callable[[], None]:
    def check() -> None:
        if stop.is_set():
            raise datasets.ValidationStopped("the dataset was registered again or deleted meanwhile")

    return check


@dataclass(frozen=True)
class Pending:
    """A registration answered before its validation ended: the row, and the validation that finishes it."""

    dataset_id: str
    validation_id: str
    future: Future[dict[str, Any]]


class DatasetValidator:
    """The API process's validation pool; ``register`` is what POST /v1/datasets calls."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        validate: Callable[..., dict[str, Any]] = datasets.validation_report,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.validate = validate  # datasets.validation_report; tests pass one that waits for their signal
        self._pool: _DaemonPool | None = None
        self._lock = threading.Lock()
        # Requests waiting for a validation each hold a database session: at most this many wait at once,
        # later ones are answered 202 straight away, so registrations can never take the API's sessions.
        self._waiting = threading.BoundedSemaphore(settings.dataset_validation_threads)
        self._per_team: collections.Counter[str] = collections.Counter()  # validations under way, by team
        self._latest: dict[tuple[str, str], _Running] = {}  # each (team, name)'s newest validation here

    def _submit(
        self,
        team_id: str,
        name: str,
        *,
        team: str | None,
        uri: str,
        layout: str,
        options: dict[str, Any],
        classes: list[str] | None,
    ) -> tuple[Future[Any], _Running | None]:
        """Queue a validation of ``(team_id, name)``, counted until it ends; returns it and the one it replaces
        in this process (the caller stops that once the new registration is stored: a refused one changes
        nothing, so the older validation must go on)."""
        with self._lock:
            if self._pool is None:
                self._pool = _DaemonPool(self.settings.dataset_validation_threads, "gkd-dataset-validation")
            pool = self._pool
        stop = threading.Event()
        call = functools.partial(
            self.validate,
            uri=uri,
            layout=layout,
            options=options,
            classes=classes,
            settings=self.settings,
            on_file=_stopper(stop),
            team=team,
        )
        key = (team_id, name)
        with self._lock:
            older = self._latest.get(key)
            future = pool.submit(call)
            self._latest[key] = _Running(future, stop)
        future.add_done_callback(lambda done: self._finished(team_id, key, done))
        return future, older

    def forget(self, team_id: str, name: str) -> None:
        """Stop the validation of a dataset that was deleted, if this process runs one."""
        with self._lock:
            running = self._latest.get((team_id, name))
        if running is not None:
            running.abandon()

    def register(
        self, *, session: Session, team_id: str, team: str, body: DatasetCreate
    ) -> tuple[Dataset, bool, Pending | None]:
        """Validate ``body`` for up to ``dataset_inline_validation_s`` and store the row: with its outcome, or
        ``validating`` with a :class:`Pending` to hand to :meth:`finish_later` once the row is committed.

        Raises:
            ValidationFailed: the URI cannot be read by this service (found within the wait; nothing stored).
            TooManyRequests: the team has ``dataset_validations_per_team`` validations under way already.
        """
        # ``team`` (its name, for the roots and buckets naming {team}) comes from the caller: reading it here
        # would open the request's transaction, which on SQLite holds the write lock through the inline wait.
        try:
            datasets.precheck_uri(body.uri, self.settings, team)  # a file:// path refused or missing: 422 at once
        except datasets.UriRejected as exc:
            raise datasets.uri_rejected(exc) from exc
        limit = self.settings.dataset_validations_per_team
        with self._lock:  # the pool is shared by every team: one team's registrations cannot fill it
            if self._per_team[team_id] >= limit:
                raise TooManyRequests(
                    f"{limit} of your datasets are still being validated; register more once one is done "
                    "(GET /v1/datasets shows which are validating)",
                    retry_after_s=10,
                )
            self._per_team[team_id] += 1
        future, older = self._submit(
            team_id, body.name, team=team, uri=body.uri, layout=body.layout, options=dict(body.options),
            classes=body.classes,
        )  # fmt: skip
        waits = self._waiting.acquire(blocking=False)
        try:
            report: dict[str, Any] | None = future.result(
                timeout=self.settings.dataset_inline_validation_s if waits else 0
            )
        except FutureTimeout:
            report = None
        except datasets.UriRejected as exc:
            raise datasets.uri_rejected(exc) from exc
        except (datasets.ValidationStopped, CancelledError) as exc:  # a newer request (or a delete) stands
            raise Conflict(
                f"dataset {body.name!r} was registered again or deleted while this registration was being "
                "validated; the newer request stands"
            ) from exc
        except Exception as exc:  # the validator itself failed: stored invalid with the cause, as in the background
            _logger.exception("validating dataset %s failed", body.name)
            report = _failed("unreadable", f"validation failed: {type(exc).__name__}: {exc}")
        finally:
            if waits:
                self._waiting.release()
        dataset, created = datasets.store_registration(session=session, team_id=team_id, body=body, report=report)
        if older is not None:  # replaced by this registration: the older outcome would only be discarded
            older.abandon()
        if report is not None:
            return dataset, created, None
        return dataset, created, Pending(dataset.id, str(dataset.report["validation_id"]), future)

    def _finished(self, team_id: str, key: tuple[str, str], done: Future[Any]) -> None:
        with self._lock:
            self._per_team[team_id] -= 1
            if self._per_team[team_id] <= 0:
                del self._per_team[team_id]
            running = self._latest.get(key)
            if running is not None and running.future is done:
                del self._latest[key]

    def finish_later(self, pending: Pending) -> None:
        """Write the outcome to the (committed) row when the validation ends."""
        pending.future.add_done_callback(lambda done: self._record(pending, done))

    def _record(self, pending: Pending, done: Future[dict[str, Any]]) -> None:
        if done.cancelled():  # the process is stopping: the row stays validating and the next start resumes it
            return
        try:
            report = done.result()
        except datasets.ValidationStopped:  # a newer registration or a deletion owns the row now
            _logger.info("validation of dataset %s stopped: registered again or deleted", pending.dataset_id)
            return
        except datasets.UriRejected as exc:
            report = _failed("layout", f"the URI cannot be read: {exc}")
        except Exception as exc:  # the validator itself failed: the row must still leave "validating"
            _logger.exception("validating dataset %s failed", pending.dataset_id)
            report = _failed("unreadable", f"validation failed: {type(exc).__name__}: {exc}")
        deadline = time.monotonic() + self.settings.outage_window_s
        delay = 1.0
        while True:
            try:
                with session_scope(self.factory) as session:
                    datasets.finish_validation(
                        session=session,
                        dataset_id=pending.dataset_id,
                        validation_id=pending.validation_id,
                        report=report,
                    )
                return
            except Exception:  # a database fault: wait it out; past the window, a restart resumes the row
                if time.monotonic() + delay > deadline:
                    _logger.exception("could not record the validation of dataset %s", pending.dataset_id)
                    return
                _logger.warning("recording the validation of dataset %s failed; retrying", pending.dataset_id)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def resume(self) -> int:
        """Validate again every row left ``validating`` by a process that stopped; returns how many."""
        with session_scope(self.factory) as session:
            rows = [
                (row.id, row.team_id, row.name, row.updated_at, row.uri, row.layout, row.options, row.classes)
                for row in datasets.validating_datasets(session=session)
            ]
            teams = {team_id: team_name(session=session, team_id=team_id) for _, team_id, *_ in rows}
        resumed = 0
        for dataset_id, team_id, name, seen, uri, layout, options, classes in rows:
            with session_scope(self.factory) as session:  # several API processes start together: one takes each
                validation_id = datasets.claim_validation(session=session, dataset_id=dataset_id, seen=seen)
            if validation_id is None:
                continue
            with self._lock:  # counted against the team's limit like any validation under way
                self._per_team[team_id] += 1
            future, _ = self._submit(
                team_id, name, team=teams[team_id], uri=uri, layout=layout, options=dict(options or {}),
                classes=classes,
            )  # fmt: skip
            self.finish_later(Pending(dataset_id, validation_id, future))
            resumed += 1
        if resumed:
            _logger.info("validating %d dataset(s) again that a stopped process left unfinished", resumed)
        return resumed

    def shutdown(self) -> None:
        """Stop taking work; validations under way finish in their threads (rows left over are resumed)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()


def _failed(kind: str, detail: str) -> dict[str, Any]:
    """A report for a validation that could not run to its end."""
    return {
        "ok": False,
        "problem_counts": {kind: 1},
        "problems": [{"kind": kind, "split": None, "name": None, "detail": detail}],
    }
