"""Service configuration: the only module that reads environment variables.

Embedded mode (the default) needs no variables at all: everything lives under ``data_dir``.
Production sets ``GKD_DATABASE_URL``, ``GKD_BROKER_URL`` and the ``GKD_S3_*`` variables.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gkd_catalog.speed import parse_speed_overrides

DEV_SECRET_KEY = "dev-only-insecure-secret-key"


class Settings(BaseSettings):
    """Typed settings, read from ``GKD_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="GKD_", extra="ignore")

    mode: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Field(default=Path(".gkd"), description="Embedded mode's home: db, queue, artifacts.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    broker_url: str | None = Field(default=None, description="Celery broker; default kombu SQLAlchemy over SQLite.")
    storage_url: str | None = Field(
        default=None, description="s3://bucket[/prefix] or file:///path; default data_dir/artifacts."
    )
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    s3_public_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint as clients reach it, for presigned URLs; default s3_endpoint_url."
    )
    presign_expiry_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Extra roots under which file:// datasets and weights are allowed; '{team}' in a root stands "
        "for the name of the team whose data it is (/datasets/{team}: each team reads its own folder only).",
    )
    dataset_inline_validation_s: float = Field(
        default=20.0,
        ge=0,
        le=600,
        description="How long POST /v1/datasets waits for validation; a slower set is answered 202 (validating).",
    )
    dataset_validation_threads: int = Field(
        default=2, ge=1, le=32, description="Datasets one API process validates at once (the rest wait)."
    )
    dataset_validations_per_team: int = Field(
        default=4, ge=1, le=1000, description="Validations a team may have under way in one API process (else 429)."
    )
    s3_allowed_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Buckets s3:// datasets and weights may name (comma-separated; '{team}' stands for the team's "
        "name, as in gkd-data-{team}); empty: any bucket the credentials read, except the service's own area.",
    )
    s3_download_concurrency: int = Field(
        default=16, ge=1, le=256, description="Objects of an s3:// dataset prefix downloaded at once."
    )
    queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["gpu"])
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    heartbeat_stale_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, description="Attempts a job or evaluation gets for lost workers.")
    queued_resend_s: float = Field(
        default=120.0, gt=0, description="The sweeper re-sends a job or evaluation queued longer than this."
    )
    outage_window_s: float = Field(
        default=300.0, ge=0, description="How long a worker waits out storage/database/broker faults, in place."
    )
    retry_backoff_base_s: float = Field(default=5.0, gt=0, description="First wait after a transient fault.")
    retry_backoff_max_s: float = Field(default=60.0, gt=0, description="Cap of the exponential backoff.")
    secret_key: str = Field(
        default=DEV_SECRET_KEY,
        min_length=16,
        description="Signs page tokens. The dev default is refused in production mode.",
    )
    max_page_size: int = Field(default=100, ge=1, le=1000, description="Most jobs one GET /v1/jobs page may ask for.")
    worker_gpus: int | None = Field(
        default=None, ge=0, description="GPUs a worker gives its jobs; default: every CUDA device it sees."
    )
    worker_cpu_ranks: int | None = Field(
        default=None, ge=1, description="A worker without GPUs runs up to this many gloo ranks; default: its cores."
    )
    capacity_interval_s: float = Field(default=10.0, gt=0, description="How often a worker advertises its slots.")
    capacity_stale_s: float = Field(default=60.0, gt=0, description="An advertisement older than this is gone.")
    prepared_datasets: bool = Field(
        default=True,
        description="Let jobs decode their datasets once into prepared stores under data_dir/prepared (beside the "
        "dataset cache), used when a stage reads more images than the split holds and the disk has room.",
    )
    rank_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Scheduling niceness of a job's training processes: under CPU contention the worker's own "
        "threads (heartbeat, reports, checkpoint pushes) and an API on the same machine come first. 0 disables.",
    )
    scratch_idle_s: float = Field(
        default=3600.0,
        gt=0,
        description="A worker removes the local work folder of a job or evaluation that is not running once "
        "nothing has touched it for this long (its checkpoints are in storage).",
    )
    stop_grace_s: float = Field(
        default=300.0, gt=0, description="After asking a job's ranks to stop, how long to wait before killing them."
    )
    notify_allow_private: bool = Field(
        default=False,
        description="Let job notifications reach private, loopback and link-local addresses (SSRF guard off).",
    )
    notify_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Connect/read timeout of one delivery.")
    notify_retry_for_s: float = Field(
        default=3600.0, gt=0, description="How long a notification is retried before it is abandoned."
    )
    notify_backoff_s: float = Field(default=2.0, gt=0, description="First retry delay; doubles, with jitter.")
    notify_backoff_max_s: float = Field(default=300.0, gt=0, description="Longest delay between two attempts.")
    notify_poll_s: float = Field(default=1.0, gt=0, description="How often the deliverer looks for due rows.")
    team_max_running_jobs: int | None = Field(
        default=None, ge=1, description="Jobs a team may run at once; more wait in queued. Default: no limit."
    )
    team_max_gpus: int | None = Field(
        default=None, ge=1, description="GPUs (resources.gpus) a team's running jobs may hold. Default: no limit."
    )
    checkpoint_retention_days: float | None = Field(
        default=None,
        ge=0,
        description="Delete the checkpoints (only those) of jobs finished more than this many days ago. "
        "Default: keep forever.",
    )
    api_workers: int | None = Field(
        default=None, ge=1, le=64, description="API server processes; default: the cores in production, 1 embedded."
    )

    speed: str = Field(
        default="",
        description="Worker: override the measured training speed defaults of its device for its jobs, as "
        "'name=value,...' (fused_adamw, attention, channels_last, compile, compile_min_steps; see "
        "docs/PERFORMANCE.md); empty keeps them. Checked when the settings load.",
    )

    @field_validator("speed")
    @classmethod
    def _check_speed(cls, value: str) -> str:
        """A misspelt override must stop the worker at start, not fail every job it runs."""
        parse_speed_overrides(value)  # ValueError naming the bad part
        return value

    @property
    def speed_overrides(self) -> dict[str, bool | int | str]:
        return parse_speed_overrides(self.speed)

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> Settings:
        """A guessable signing key would let anyone forge page tokens."""
        if self.mode == "production" and self.secret_key == DEV_SECRET_KEY:
            raise ValueError("GKD_SECRET_KEY must be set to a random value in production mode")
        return self

    @field_validator("allowed_roots", "queues", "s3_allowed_buckets", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """Accept ``a:b`` / ``a,b`` strings, or a JSON list, from the environment as lists."""
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            separator = "," if "," in value else ":"
            return [part for part in value.split(separator) if part]
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'gkd.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.data_dir / "artifacts").resolve().as_uri()

    @property
    def resolved_api_workers(self) -> int:
        """One process embedded (SQLite has one writer); in production one per core this process may use."""
        if self.api_workers is not None:
            return self.api_workers
        return len(os.sched_getaffinity(0)) if self.mode == "production" else 1


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build settings once per process; tests clear the cache to override them."""
    return Settings()
