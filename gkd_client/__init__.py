"""gkd_client: the HTTP-only Python SDK for a GKD Distill server.

It needs httpx and nothing of the server stack (no torch, Celery, SQLAlchemy or FastAPI), so
``pip install gkd-distill`` is enough to submit and follow jobs from a laptop::

    from gkd_client import Client

    with Client() as gkd:                      # GKD_URL and GKD_API_KEY from the environment
        job = gkd.wait_for(gkd.submit_job(spec, idempotency_key="my-run-1"), timeout=3600)
"""

from __future__ import annotations

from gkd_client.errors import (
    APIError,
    AuthError,
    ChecksumError,
    ClientError,
    ConflictError,
    FieldError,
    NotFoundError,
    ServerError,
    TransportError,
    ValidationError,
    WaitTimeout,
)
from gkd_client.models import (
    TERMINAL_STATUSES,
    Artifact,
    ArtifactLink,
    Dataset,
    DatasetProblem,
    DatasetReport,
    DomainScore,
    Evaluation,
    Event,
    GpuHours,
    Job,
    JobEstimate,
    JobPage,
    MetricPage,
    MetricRow,
    PhaseEstimate,
    SplitCounts,
    Summary,
)
from gkd_client.sdk import DEFAULT_URL, KEY_ENV, URL_ENV, Client, NotifySecret, ProgressFn
from gkd_client.webhooks import SIGNATURE_HEADER, SignatureError, verify_signature

__all__ = [
    "DEFAULT_URL",
    "KEY_ENV",
    "SIGNATURE_HEADER",
    "TERMINAL_STATUSES",
    "URL_ENV",
    "APIError",
    "Artifact",
    "ArtifactLink",
    "AuthError",
    "ChecksumError",
    "Client",
    "ClientError",
    "ConflictError",
    "Dataset",
    "DatasetProblem",
    "DatasetReport",
    "DomainScore",
    "Evaluation",
    "Event",
    "FieldError",
    "GpuHours",
    "Job",
    "JobEstimate",
    "JobPage",
    "MetricPage",
    "MetricRow",
    "NotFoundError",
    "NotifySecret",
    "PhaseEstimate",
    "ProgressFn",
    "ServerError",
    "SignatureError",
    "SplitCounts",
    "Summary",
    "TransportError",
    "ValidationError",
    "WaitTimeout",
    "verify_signature",
]
