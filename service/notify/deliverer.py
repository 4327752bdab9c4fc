"""Send due notifications: sign, POST to the checked address, retry with backoff, record every attempt.

Runs as a daemon thread in every worker process (started beside the sweeper in worker/celery_app.py, so
``gkd serve``'s embedded worker runs it too). Each due row is claimed by a compare-and-set on its
``next_attempt_at`` (pushed past the longest a send can take), sent outside any transaction, then the
outcome is written with a ``notification`` job event. A 2xx delivers; a 5xx, 408, 425, 429, timeout or
connection error is retried after ``notify_backoff_s * 2**(n-1)`` seconds (capped, with jitter) until
``notify_retry_for_s`` after the change; any other answer (a 3xx is never followed, a 4xx will not heal)
abandons the row at once, as does an address the SSRF guard refuses at send time.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service import jobs
from service.models import Job, NotificationDelivery, utcnow
from service.notify import addresses, signing
from service.notify.outbox import ABANDONED, DELIVERED, PENDING
from service.notify.team_secret import SecretUnavailable, signing_secret
from service.settings import Settings

_logger = logging.getLogger(__name__)
SessionScope = Callable[[], AbstractContextManager[Session]]
MAX_RESPONSE_BYTES = 64 * 1024  # the answer is read only so the connection ends cleanly; its body is unused
RETRYABLE_STATUSES = frozenset({408, 425, 429})
USER_AGENT = "GKD-Distill-Notify/1"
KEEP_FINISHED = timedelta(days=7)  # delivered/abandoned rows are kept this long; the job events stay for good
PRUNE_EVERY_S = 3600.0
MAX_ADDRESSES = 2  # connect attempts per send (an IPv6 and an IPv4 address, typically); keeps the lease valid


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status or an error, and whether trying again may help."""

    summary: str
    delivered: bool = False
    retry: bool = False


def deliver_due(session_scope: SessionScope, settings: Settings, *, limit: int = 20, parallel: int = 4) -> int:
    """Claim up to ``limit`` due deliveries and send them (``parallel`` at a time); returns how many were sent."""
    claimed = _claim(session_scope, settings, limit)
    if not claimed:
        return 0
    with ThreadPoolExecutor(max_workers=min(parallel, len(claimed)), thread_name_prefix="gkd-notify") as pool:
        for future in [pool.submit(_deliver_one, session_scope, settings, delivery_id) for delivery_id in claimed]:
            future.result()
    return len(claimed)


def _lease_s(settings: Settings) -> float:
    # Name resolution, connect and read each get the timeout; the lease outlives all of them.
    return 4 * settings.notify_timeout_s + 30


def _claim(session_scope: SessionScope, settings: Settings, limit: int) -> list[str]:
    now = utcnow()
    lease_until = now + timedelta(seconds=_lease_s(settings))
    claimed: list[str] = []
    with session_scope() as session:
        due = session.execute(
            select(NotificationDelivery.id, NotificationDelivery.next_attempt_at)
            .where(NotificationDelivery.status == PENDING, NotificationDelivery.next_attempt_at <= now)
            .order_by(NotificationDelivery.next_attempt_at)
            .limit(limit)
        ).all()
        for delivery_id, due_at in due:
            result = session.execute(
                update(NotificationDelivery)
                .where(
                    NotificationDelivery.id == delivery_id,
                    NotificationDelivery.status == PENDING,
                    NotificationDelivery.next_attempt_at == due_at,
                )
                .values(next_attempt_at=lease_until)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(delivery_id)
    return claimed


def _deliver_one(session_scope: SessionScope, settings: Settings, delivery_id: str) -> None:
    try:
        with session_scope() as session:
            row = session.get(NotificationDelivery, delivery_id)
            assert row is not None
            url, team_id, payload = row.url, row.team_id, row.payload
            try:
                secret: str | None = signing_secret(session=session, team_id=team_id, server_key=settings.secret_key)
            except SecretUnavailable as exc:
                secret, secret_problem = None, str(exc)
        if secret is None:
            outcome = Outcome(f"not sent: {secret_problem}")
        else:
            body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
            outcome = send(url, body, secret=secret, settings=settings)
        _record(session_scope, settings, delivery_id, outcome)
    except Exception:  # one bad row must not stop the others; its lease expires and it is tried again
        _logger.exception("notification %s: delivery failed unexpectedly", delivery_id)


def send(url: str, body: bytes, *, secret: str, settings: Settings) -> Outcome:
    """One signed POST of ``body`` to ``url`` through the SSRF guard; never raises for network trouble."""
    try:
        target = addresses.check_target(url, allow_private=settings.notify_allow_private)
    except addresses.AddressRefused as exc:
        return Outcome(f"refused: {exc}")
    except addresses.ResolutionFailed as exc:
        return Outcome(str(exc), retry=True)
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.HEADER: signing.signature_header(secret, int(time.time()), body),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    timeout = httpx.Timeout(settings.notify_timeout_s)
    # A fresh client per send: pooled connections are keyed by the pinned address, and a TLS connection
    # opened for one host name must never carry a request for another.
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        candidates = target.addresses[:MAX_ADDRESSES]
        for index, address in enumerate(candidates):
            request = client.build_request("POST", target.pinned_url(address), content=body, headers=headers)
            request.extensions.update(extensions)
            try:
                response = client.send(request, stream=True)
                try:
                    _read_bounded(response, settings.notify_timeout_s)
                finally:
                    response.close()
            except httpx.ConnectError as exc:
                if index + 1 < len(candidates):
                    continue  # like a browser: the name's next (checked) address, e.g. 127.0.0.1 after ::1
                return Outcome(f"{type(exc).__name__}: {exc}", retry=True)
            except httpx.TimeoutException as exc:
                return Outcome(f"timed out after {settings.notify_timeout_s:g} s ({type(exc).__name__})", retry=True)
            except httpx.HTTPError as exc:
                return Outcome(f"{type(exc).__name__}: {exc}", retry=True)
            return _classify(response)
    raise AssertionError("check_target returns at least one address")


def _read_bounded(response: httpx.Response, seconds: float) -> None:
    """Read at most MAX_RESPONSE_BYTES for at most ``seconds``: a huge or dripping answer cannot hold the sender."""
    read, deadline = 0, time.monotonic() + seconds
    for chunk in response.iter_raw():
        read += len(chunk)
        if read >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
            break


def _classify(response: httpx.Response) -> Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(f"{code}", delivered=True)
    if response.is_redirect:
        location = response.headers.get("location", "?")[:200]
        return Outcome(f"{code} redirect to {location} not followed (redirects are never followed; use the final URL)")
    if code >= 500 or code in RETRYABLE_STATUSES:
        return Outcome(f"{code}", retry=True)
    return Outcome(f"{code} (not retried: only 5xx, 408, 425 and 429 answers are)")


def backoff_s(settings: Settings, attempts: int) -> float:
    """Delay before attempt ``attempts + 1``: doubling from notify_backoff_s, capped, jittered to 50-100 %."""
    delay = min(settings.notify_backoff_max_s, settings.notify_backoff_s * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.5, 1.0)


def _record(session_scope: SessionScope, settings: Settings, delivery_id: str, outcome: Outcome) -> None:
    now = utcnow()
    with session_scope() as session:
        row = session.get(NotificationDelivery, delivery_id)
        assert row is not None
        row.attempts += 1
        deadline = row.created_at + timedelta(seconds=settings.notify_retry_for_s)
        if outcome.delivered:
            row.status, row.finished_at, row.last_error, verdict = DELIVERED, now, None, "delivered"
        else:
            row.last_error = outcome.summary[:2000]
            next_at: datetime = now + timedelta(seconds=backoff_s(settings, row.attempts))
            if outcome.retry and next_at <= deadline:
                row.next_attempt_at = next_at
                verdict = f"retry in {(next_at - now).total_seconds():.1f} s"
            else:
                row.status, row.finished_at = ABANDONED, now
                verdict = (
                    "abandoned" if not outcome.retry else f"abandoned: retried for {settings.notify_retry_for_s:g} s"
                )
        job = session.get(Job, row.job_id)
        if job is not None:
            jobs.add_event(
                session=session,
                job=job,
                type="notification",
                message=f"job.{row.event} -> {_shown(row.url)}: {outcome.summary} (attempt {row.attempts}, {verdict})",
            )


def _shown(url: str) -> str:
    """The URL without its query (it may carry the receiver's own token)."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def prune(session_scope: SessionScope, *, older_than: timedelta = KEEP_FINISHED) -> int:
    """Delete delivered and abandoned rows finished before ``older_than`` ago; returns how many."""
    cutoff = utcnow() - older_than
    with session_scope() as session:
        result = session.execute(
            delete(NotificationDelivery).where(
                NotificationDelivery.status.in_([DELIVERED, ABANDONED]), NotificationDelivery.finished_at < cutoff
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


class Deliverer:
    """Runs ``deliver_due`` every ``interval_s`` seconds in a daemon thread."""

    def __init__(self, session_scope: SessionScope, settings: Settings, *, interval_s: float | None = None) -> None:
        self.session_scope = session_scope
        self.settings = settings
        self.interval_s = settings.notify_poll_s if interval_s is None else interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gkd-notify-deliverer", daemon=True)

    def start(self) -> Deliverer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        pruned_at = 0.0
        while not self._stop.wait(self.interval_s):
            try:
                while deliver_due(self.session_scope, self.settings) and not self._stop.is_set():
                    pass  # something was due: look again at once
                if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                    prune(self.session_scope)
                    pruned_at = time.monotonic()
            except Exception:  # a database blip must not kill the thread; the next round retries
                _logger.exception("notification deliverer: round failed")
