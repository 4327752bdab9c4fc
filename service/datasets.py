"""Dataset registry: register (validate with gkd_core's layout readers, keep the report), get, list.

gkd_core's validator checks every file pairing and header but decodes only a sample of label files
(``label_sample``), so a local folder takes seconds; an ImageNet-size set or an s3:// one takes longer,
and the API then answers before it ends (service/dataset_validation.py: status "validating" until the
outcome is written). A dataset that fails is kept with status "invalid" and its report; jobs naming
it are refused, as they are while it is validating.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.auth import team_name
from service.errors import Conflict, NotFound, ValidationFailed, field_error
from service.models import (
    TERMINAL_STATUSES,
    Dataset,
    DatasetStatus,
    Evaluation,
    Job,
    new_id,
    utcnow,
)
from service.schemas import DatasetCreate, JobSpec
from service.settings import Settings

_logger = logging.getLogger(__name__)


class UriRejected(ValueError):
    """The URI cannot be read by this service (scheme, root or traversal)."""


class ValidationStopped(Exception):
    """A validation abandoned part-way: its dataset was registered again or deleted meanwhile."""


def resolve_dataset_uri(
    uri: str, settings: Settings, on_file: Callable[[], None] | None = None, *, team: str | None = None
) -> Path:
    """Turn a dataset or weights URI into a local path through service.uris.

    file:// only under the allowed roots (symlinks and '..' resolved first), s3:// fetched into the
    cache, artifact:// by the worker; any refusal becomes UriRejected (a 422, never a 500).
    """
    from service.uris import UriError, UriResolver

    try:
        return UriResolver.from_settings(settings, team=team).resolve(uri, on_file=on_file)
    except UriError as exc:
        raise UriRejected(str(exc)) from exc
    except ValidationStopped:
        raise
    except Exception as exc:  # storage failures while fetching s3:// data: report, never 500
        raise UriRejected(f"could not fetch {uri}: {type(exc).__name__}: {exc}") from exc


def _validate(
    path: Path, layout: str, options: dict[str, Any], on_file: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run gkd_core's validator with the layout options (imported here: the API must not import torch at start-up).

    A value outside an option's choices is a ``layout`` problem in the report (the choices live in gkd_core).
    """
    from gkd_core.data.validation import validate_dataset

    return validate_dataset(path, layout, on_file=on_file, **options).to_dict()


def validation_report(
    *,
    uri: str,
    layout: str,
    options: dict[str, Any],
    classes: list[str] | None,
    settings: Settings,
    on_file: Callable[[], None] | None = None,
    team: str | None = None,
) -> dict[str, Any]:
    """The validation report of a registration: the URI resolved (an s3:// set is fetched first), the set
    validated, and the classes given compared with the set's own.

    ``on_file`` is called before each file is fetched or checked; raising ``ValidationStopped`` from it
    abandons the validation. ``team`` (its name) fills the ``{team}`` of configured roots and buckets.

    Raises:
        UriRejected: the URI cannot be read by this service.
        ValidationStopped: ``on_file`` stopped it.
    """
    report = _validate(resolve_dataset_uri(uri, settings, on_file, team=team), layout, options, on_file)
    if classes is not None and report.get("ok") and report.get("classes"):
        found = report["classes"].get("names")
        if found and list(found) != list(classes):
            report["ok"] = False
            report.setdefault("problems", []).append(
                {
                    "kind": "classes",
                    "split": None,
                    "name": None,
                    "detail": f"classes given ({len(classes)}) differ from the dataset's ({len(found)}): "
                    "omit classes or pass the dataset's own list",
                }
            )
    return report


def uri_rejected(exc: UriRejected) -> ValidationFailed:
    """The 422 for a URI this service cannot read (nothing is stored)."""
    return ValidationFailed(
        [field_error("uri", str(exc), "use file:// under an allowed root (GKD_ALLOWED_ROOTS) or an s3:// prefix")]
    )


def register_dataset(
    *, session: Session, team_id: str, body: DatasetCreate, settings: Settings
) -> tuple[Dataset, bool]:
    """Validate and store a dataset, inline; a name already registered is re-validated and replaced.

    Returns the row and whether it was created (False: updated). The API uses
    :mod:`service.dataset_validation` instead, which answers without waiting for a big set.

    Raises:
        ValidationFailed: the URI cannot be read by this service (outside the allowed roots, a scheme or
            path it refuses, an s3:// prefix it cannot fetch); nothing is stored.
    """
    try:
        report = validation_report(
            uri=body.uri, layout=body.layout, options=dict(body.options), classes=body.classes, settings=settings,
            team=team_name(session=session, team_id=team_id),
        )  # fmt: skip
    except UriRejected as exc:
        raise uri_rejected(exc) from exc
    return store_registration(session=session, team_id=team_id, body=body, report=report)


def store_registration(
    *, session: Session, team_id: str, body: DatasetCreate, report: dict[str, Any] | None
) -> tuple[Dataset, bool]:
    """Insert or replace the team's row for ``body.name``: with its report, or ``validating`` (report None)
    under a fresh ``validation_id`` that only the validation started now may finish."""
    if report is None:
        report = {"ok": None, "validation_id": new_id(), "started_at": utcnow().isoformat()}
        status = DatasetStatus.VALIDATING
    else:
        status = DatasetStatus.VALID if report.get("ok") else DatasetStatus.INVALID
    dataset = session.scalar(select(Dataset).where(Dataset.team_id == team_id, Dataset.name == body.name))
    created = dataset is None
    now = utcnow()
    if dataset is None:
        dataset = Dataset(team_id=team_id, name=body.name, created_at=now)
        session.add(dataset)
    dataset.layout, dataset.uri, dataset.classes = body.layout, body.uri, body.classes
    dataset.options = dict(body.options)
    dataset.status, dataset.report, dataset.updated_at = status.value, report, now
    session.flush()
    _logger.info("dataset %s registered for team %s: %s", body.name, team_id, status.value)
    return dataset, created


def finish_validation(*, session: Session, dataset_id: str, validation_id: str, report: dict[str, Any]) -> bool:
    """Record the outcome of validation ``validation_id``; False (nothing written) when the row is gone or
    was registered again meanwhile (a newer validation owns it)."""
    query = select(Dataset).where(Dataset.id == dataset_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    dataset = session.scalar(query)
    if dataset is None or dataset.status != DatasetStatus.VALIDATING.value:
        return False
    if (dataset.report or {}).get("validation_id") != validation_id:
        return False
    status = DatasetStatus.VALID if report.get("ok") else DatasetStatus.INVALID
    dataset.status, dataset.report, dataset.updated_at = status.value, report, utcnow()
    _logger.info("dataset %s validated for team %s: %s", dataset.name, dataset.team_id, status.value)
    return True


def claim_validation(*, session: Session, dataset_id: str, seen: datetime) -> str | None:
    """Take over a row left ``validating``: a fresh ``validation_id``, written only if the row is as it was
    read (``updated_at == seen``); None when another process took it first or it has moved on."""
    validation_id = new_id()
    report = {"ok": None, "validation_id": validation_id, "started_at": utcnow().isoformat()}
    taken = session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id, Dataset.status == DatasetStatus.VALIDATING.value, Dataset.updated_at == seen)
        .values(report=report, updated_at=utcnow())
    )
    return validation_id if taken.rowcount == 1 else None  # type: ignore[attr-defined]


def precheck_uri(uri: str, settings: Settings, team: str | None = None) -> None:
    """Refuse at once what needs no download to refuse: a file:// path outside the roots, malformed, missing.

    Raises:
        UriRejected: as ``resolve_dataset_uri`` would.
    """
    if urlsplit(uri).scheme == "file":
        resolve_dataset_uri(uri, settings, team=team)


def validating_datasets(*, session: Session) -> list[Dataset]:
    """Every team's rows still ``validating`` (a restarted API validates them again)."""
    return list(session.scalars(select(Dataset).where(Dataset.status == DatasetStatus.VALIDATING.value)))


def get_dataset(*, session: Session, team_id: str, name: str) -> Dataset:
    """The team's dataset by name, or NotFound."""
    dataset = find_dataset(session=session, team_id=team_id, name=name)
    if dataset is None:
        raise NotFound(f"no dataset {name!r}; register it with POST /v1/datasets")
    return dataset


def delete_dataset(*, session: Session, team_id: str, name: str) -> Dataset:
    """Remove the team's registration of ``name`` (the data itself is not touched); returns the row removed.

    Raises:
        NotFound: the team has no dataset of that name.
        Conflict: a job or evaluation that has not ended reads it (it would fail part-way without it).
    """
    dataset = get_dataset(session=session, team_id=team_id, name=name)
    users = readers(session=session, team_id=team_id, name=name)
    if users:
        shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise Conflict(
            f"dataset {name!r} is read by {shown}, which has not ended; cancel it or wait for it to end, "
            "then delete the dataset"
        )
    session.delete(dataset)
    session.flush()
    _logger.info("dataset %s deleted for team %s", name, team_id)
    return dataset


def readers(*, session: Session, team_id: str, name: str) -> list[str]:
    """The team's jobs and evaluations that have not ended and name dataset ``name``: ``job <id>`` /
    ``evaluation <id>``."""
    found: list[str] = []
    ended = [status.value for status in TERMINAL_STATUSES]  # evaluations share the jobs' lifecycle
    active_jobs = select(Job).where(Job.team_id == team_id, Job.status.not_in(ended))
    for job in session.scalars(active_jobs.order_by(Job.created_at)):
        try:
            names = {ref.dataset for _, ref, _ in JobSpec.model_validate(job.spec).datasets()}
        except ValueError:  # a spec this version cannot read: keep the data it may need
            names = {name}
        if name in names:
            found.append(f"job {job.id}")
    active_evaluations = select(Evaluation).where(Evaluation.team_id == team_id, Evaluation.status.not_in(ended))
    for evaluation in session.scalars(active_evaluations.order_by(Evaluation.created_at)):
        if any(target.get("dataset") == name for target in evaluation.targets or []):
            found.append(f"evaluation {evaluation.id}")
    return found


def find_dataset(*, session: Session, team_id: str, name: str) -> Dataset | None:
    """The team's dataset by name, or None."""
    if "\x00" in name or len(name) > 100:
        return None
    return session.scalar(select(Dataset).where(Dataset.team_id == team_id, Dataset.name == name))


def list_datasets(*, session: Session, team_id: str) -> list[Dataset]:
    """All of the team's datasets by name."""
    return list(session.scalars(select(Dataset).where(Dataset.team_id == team_id).order_by(Dataset.name)))
