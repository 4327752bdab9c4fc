"""Application factory: builds the FastAPI app with its routers and error handlers."""

from __future__ import annotations

from fastapi import FastAPI

from api.routes import dashboard, health


def create_app() -> FastAPI:
    """Build the API application (no torch import, no connections opened here)."""
    app = FastAPI(
        title="GKD Distill",
        version="0.1.0",
        description="Distillation as a service: Generalizable Knowledge Distillation (CVPR 2026).",
    )
    app.include_router(health.router)
    app.include_router(dashboard.router)
    return app
