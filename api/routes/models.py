"""The curated teacher/student zoo (a static table: no torch import)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentTeam
from api.errors import responses
from service.schemas import ModelInfo, ModelList
from service.zoo import curated_models

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get(
    "",
    response_model=ModelList,
    summary="The model zoo",
    description="Curated teachers and students: family, parameters (M), embed dim, patch size, feature "
    "API and roles. Other timm names are accepted in a JobSpec when they pass the feature-matching rule.",
    responses=responses(401),
)
def list_models(team: CurrentTeam) -> ModelList:
    return ModelList(items=[ModelInfo(**m.to_dict()) for m in curated_models()])
