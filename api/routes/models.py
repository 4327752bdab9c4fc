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
    "API, roles, and the licence of the pretrained weights timm serves for each (`weights`: tag, licence, "
    "source URL, whether commercial use is allowed, training data, notes). Other timm names are accepted in "
    "a JobSpec when they pass the feature-matching rule; their weights' licence is reported as unknown.",
    responses=responses(401),
)
def list_models(team: CurrentTeam) -> ModelList:
    return ModelList(items=[ModelInfo(**m.to_dict()) for m in curated_models()])
