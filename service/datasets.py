"""Dataset registry: register (validate with gkd_core's layout readers, keep the report), get, list.

Validation runs inline in the request: gkd_core's validator checks every file pairing and header
but decodes only a sample of label files (``label_sample``), so it takes seconds on a local folder.
A dataset that fails is kept with status "invalid" and its report; jobs naming it are refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import NotFound, ValidationFailed, field_error
from service.models import Dataset, DatasetStatus, utcnow
from service.schemas import DatasetCreate
from service.settings import Settings

_logger = logging.getLogger(__name__)


class UriRejected(ValueError):
    """The URI cannot be read by this service (scheme, root or traversal)."""


def resolve_dataset_uri(uri: str, settings: Settings) -> Path:
    """Turn a dataset or weights URI into a local path through service.uris.

    file:// only under the allowed roots (symlinks and '..' resolved first), s3:// fetched into the
    cache, artifact:// by the worker; any refusal becomes UriRejected (a 422, never a 500).
    """
    from service.uris import UriError, UriResolver

    try:
        return UriResolver.from_settings(settings).resolve(uri)
    except UriError as exc:
        raise UriRejected(str(exc)) from exc
    except Exception as exc:  # storage failures while fetching s3:// data: report, never 500
        raise UriRejected(f"could not fetch {uri}: {type(exc).__name__}: {exc}") from exc


def _validate(path: Path, layout: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run gkd_core's validator with the layout options (imported here: the API must not import torch at start-up).

    A value outside an option's choices is a ``layout`` problem in the report (the choices live in gkd_core).
    """
    from gkd_core.data.validation import validate_dataset

    return validate_dataset(path, layout, **options).to_dict()


def register_dataset(
    *, session: Session, team_id: str, body: DatasetCreate, settings: Settings
) -> tuple[Dataset, bool]:
    """Validate and store a dataset; a name already registered is re-validated and replaced.

    Returns the row and whether it was created (False: updated).

    Raises:
        ValidationFailed: the URI cannot be read by this service (outside the allowed roots, a scheme or
            path it refuses, an s3:// prefix it cannot fetch); nothing is stored.
    """
    try:
        path = resolve_dataset_uri(body.uri, settings)
    except UriRejected as exc:
        raise ValidationFailed(
            [field_error("uri", str(exc), "use file:// under an allowed root (GKD_ALLOWED_ROOTS) or an s3:// prefix")]
        ) from exc
    report = _validate(path, body.layout, dict(body.options))
    if body.classes is not None and report.get("ok") and report.get("classes"):
        found = report["classes"].get("names")
        if found and list(found) != list(body.classes):
            report["ok"] = False
            report.setdefault("problems", []).append(
                {
                    "kind": "classes",
                    "split": None,
                    "name": None,
                    "detail": f"classes given ({len(body.classes)}) differ from the dataset's ({len(found)}): "
                    "omit classes or pass the dataset's own list",
                }
            )
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


def get_dataset(*, session: Session, team_id: str, name: str) -> Dataset:
    """The team's dataset by name, or NotFound."""
    dataset = find_dataset(session=session, team_id=team_id, name=name)
    if dataset is None:
        raise NotFound(f"no dataset {name!r}; register it with POST /v1/datasets")
    return dataset


def find_dataset(*, session: Session, team_id: str, name: str) -> Dataset | None:
    """The team's dataset by name, or None."""
    if "\x00" in name or len(name) > 100:
        return None
    return session.scalar(select(Dataset).where(Dataset.team_id == team_id, Dataset.name == name))


def list_datasets(*, session: Session, team_id: str) -> list[Dataset]:
    """All of the team's datasets by name."""
    return list(session.scalars(select(Dataset).where(Dataset.team_id == team_id).order_by(Dataset.name)))
