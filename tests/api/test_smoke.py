"""The app factory returns a working FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app


def test_create_app_serves_healthz() -> None:
    app = create_app()
    assert isinstance(app, FastAPI)
    response = TestClient(app).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
