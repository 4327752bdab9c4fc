"""Datasets: register (validated, report kept; big sets answered 202 while validating), list, read, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api.deps import CurrentTeam, SessionDep, ValidatorDep
from api.errors import responses
from service import datasets
from service.schemas import DatasetCreate, DatasetList, DatasetRead

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post(
    "",
    status_code=201,
    response_model=DatasetRead,
    summary="Register a dataset",
    description="Validates the dataset with gkd_core's layout readers and stores the report. 201 when new, 200 when "
    "the name was registered before (re-validated and replaced). A set whose validation takes longer than the "
    "server's `GKD_DATASET_INLINE_VALIDATION_S` (an ImageNet-size folder, an s3:// set to download) is stored as "
    "`validating` and answered 202; read `GET /v1/datasets/{name}` until it is `valid` or `invalid`. A dataset "
    "that fails validation is kept with status `invalid`; jobs naming it are refused with its report, as they are "
    "while it is validating.",
    responses={
        200: {"description": "Re-registered", "model": DatasetRead},
        202: {"description": "Stored; still validating", "model": DatasetRead},
        **responses(401, 409, 413, 415, 422, 429),
    },
)
def register_dataset(
    body: DatasetCreate, team: CurrentTeam, session: SessionDep, validator: ValidatorDep
) -> JSONResponse:
    dataset, created, pending = validator.register(session=session, team_id=team.id, team=team.name, body=body)
    session.commit()
    if pending is not None:
        validator.finish_later(pending)
    payload = DatasetRead.model_validate(dataset).model_dump(mode="json")
    status = 202 if pending is not None else 201 if created else 200
    return JSONResponse(payload, status_code=status, headers={"Location": f"/v1/datasets/{dataset.name}"})


@router.get("", response_model=DatasetList, summary="List datasets", responses=responses(401))
def list_datasets(team: CurrentTeam, session: SessionDep) -> DatasetList:
    """The team's datasets by name, each with its status and validation report."""
    rows = datasets.list_datasets(session=session, team_id=team.id)
    return DatasetList(items=[DatasetRead.model_validate(r) for r in rows])


@router.get(
    "/{name}",
    response_model=DatasetRead,
    summary="Read a dataset and its validation report",
    description="Images per split, label values seen, and every problem found.",
    responses=responses(401, 404),
)
def read_dataset(name: str, team: CurrentTeam, session: SessionDep) -> DatasetRead:
    return DatasetRead.model_validate(datasets.get_dataset(session=session, team_id=team.id, name=name))


@router.delete(
    "/{name}",
    status_code=204,
    summary="Delete a dataset",
    description="Forget the registration (the files themselves are not touched) and stop its validation if one is "
    "under way. A dataset that a queued or running job or evaluation reads is a 409 naming them: cancel them or "
    "wait for them to end. Jobs that ended keep their results; a later job naming the dataset needs it registered "
    "again.",
    responses=responses(401, 404, 409),
)
def delete_dataset(name: str, team: CurrentTeam, session: SessionDep, validator: ValidatorDep) -> Response:
    datasets.delete_dataset(session=session, team_id=team.id, name=name)
    session.commit()
    validator.forget(team.id, name)
    return Response(status_code=204)
