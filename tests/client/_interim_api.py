"""A stand-in for the /v1 routes while the real API (engineer E) is not merged yet.

It follows docs' REST contract on top of the real service layer, so the SDK, CLI and dashboard
tests exercise real jobs in a real database. ``tests/client/_live.py`` uses the real
``api.main.create_app`` as soon as it serves /v1/jobs; then this module is unused and deleted.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from api.routes import dashboard
from service import auth, evaluations, jobs
from service.db import session_scope
from service.errors import DomainError, InvalidTransition, NotFound, Unauthorized
from service.idempotency import request_hash
from service.schemas import ArtifactRead, EvaluationCreate, EvaluationRead, JobEventRead, JobRead, JobSpec, MetricRead
from service.storage import LocalStore

_STATUS = {NotFound: 404, InvalidTransition: 409, Unauthorized: 401}


def _problem(status: int, title: str, detail: str, errors: list[Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def build_interim_app(factory: sessionmaker[Session], store: LocalStore) -> FastAPI:
    app = FastAPI()
    app.include_router(dashboard.router)

    @app.exception_handler(DomainError)
    def _domain(request: Request, exc: DomainError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
        return _problem(status, exc.__class__.__name__, str(exc), getattr(exc, "errors", None))

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _problem(422, "Validation failed", f"{len(errors)} problem(s)", errors)

    def team(authorization: str | None) -> str:
        with session_scope(factory) as s:
            return auth.authenticate(session=s, key=(authorization or "").removeprefix("Bearer ")).id

    def read(job: Any) -> dict[str, Any]:
        return JobRead.from_job(job).model_dump(mode="json")

    @app.post("/v1/jobs", status_code=201)
    def create(
        spec: JobSpec,
        authorization: str | None = Header(None),
        idempotency_key: str | None = Header(None),
    ) -> JSONResponse:
        team_id = team(authorization)
        digest = request_hash(spec.model_dump(mode="json"))
        with session_scope(factory) as s:
            if idempotency_key:
                found = jobs.find_by_idempotency_key(session=s, team_id=team_id, key=idempotency_key)
                if found is not None:
                    if found.request_hash != digest:
                        return _problem(409, "Conflict", "Idempotency-Key reused with another body")
                    return JSONResponse(read(found), status_code=200, headers={"Idempotent-Replayed": "true"})
            job = jobs.create_job(
                session=s, team_id=team_id, spec=spec, idempotency_key=idempotency_key, request_hash=digest
            )
            return JSONResponse(read(job), status_code=201)

    @app.get("/v1/jobs")
    def list_(
        authorization: str | None = Header(None),
        status: str | None = None,
        method: str | None = None,
        page_size: int = 20,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        team_id = team(authorization)
        from service.pagination import decode_token, encode_token

        filters = {"status": status, "method": method}
        after = decode_token(page_token, filters=filters, secret="t") if page_token else None
        with session_scope(factory) as s:
            page, cursor = jobs.list_jobs(
                session=s,
                team_id=team_id,
                status=[status] if status else None,
                method=method,
                page_size=page_size,
                after=after,
            )
            token = encode_token(cursor, filters=filters, secret="t") if cursor else None
            return {"items": [read(j) for j in page], "next_page_token": token}

    @app.get("/v1/jobs/{job_id}")
    def get(job_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        team_id = team(authorization)
        with session_scope(factory) as s:
            return read(jobs.get_job(session=s, job_id=job_id, team_id=team_id))

    @app.post("/v1/jobs/{job_id}/cancel", status_code=202)
    def cancel(job_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        team_id = team(authorization)
        with session_scope(factory) as s:
            return read(jobs.request_cancel(session=s, job_id=job_id, team_id=team_id))

    @app.get("/v1/jobs/{job_id}/events")
    def events(job_id: str, authorization: str | None = Header(None)) -> list[dict[str, Any]]:
        team_id = team(authorization)
        with session_scope(factory) as s:
            jobs.get_job(session=s, job_id=job_id, team_id=team_id)
            rows = jobs.list_events(session=s, job_id=job_id)
            return [JobEventRead.model_validate(e).model_dump(mode="json") for e in rows]

    @app.get("/v1/jobs/{job_id}/metrics")
    def metrics(
        job_id: str, authorization: str | None = Header(None), since_step: int | None = None
    ) -> list[dict[str, Any]]:
        team_id = team(authorization)
        with session_scope(factory) as s:
            jobs.get_job(session=s, job_id=job_id, team_id=team_id)
            rows = jobs.list_metrics(session=s, job_id=job_id, since_step=since_step)
            return [MetricRead.model_validate(r).model_dump(mode="json") for r in rows]

    @app.get("/v1/jobs/{job_id}/artifacts")
    def artifacts(job_id: str, authorization: str | None = Header(None)) -> list[dict[str, Any]]:
        team_id = team(authorization)
        with session_scope(factory) as s:
            jobs.get_job(session=s, job_id=job_id, team_id=team_id)
            return [
                ArtifactRead.model_validate(a).model_dump(mode="json")
                for a in jobs.list_artifacts(session=s, job_id=job_id)
            ]

    @app.get("/v1/jobs/{job_id}/artifacts/{name}")
    def artifact(job_id: str, name: str, authorization: str | None = Header(None)) -> FileResponse:
        team_id = team(authorization)
        with session_scope(factory) as s:
            jobs.get_job(session=s, job_id=job_id, team_id=team_id)
            row = jobs.get_artifact(session=s, job_id=job_id, name=name)
            return FileResponse(store.local_path(row.storage_key), filename=name)

    @app.post("/v1/jobs/{job_id}/evaluations", status_code=202)
    def evaluate(job_id: str, body: EvaluationCreate, authorization: str | None = Header(None)) -> dict[str, Any]:
        team_id = team(authorization)
        with session_scope(factory) as s:
            job = jobs.get_job(session=s, job_id=job_id, team_id=team_id)
            row = evaluations.create_evaluation(session=s, job=job, targets=body.targets)
            return EvaluationRead.model_validate(row).model_dump(mode="json")

    @app.get("/v1/evaluations/{evaluation_id}")
    def evaluation(evaluation_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        team_id = team(authorization)
        with session_scope(factory) as s:
            row = evaluations.get_evaluation(session=s, evaluation_id=evaluation_id, team_id=team_id)
            return EvaluationRead.model_validate(row).model_dump(mode="json")

    return app
