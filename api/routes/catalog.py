"""The catalogue of methods, heads, layouts, references and phases (gkd_catalog; no torch import).

The dashboard builds its selects from this route instead of keeping its own copy of the names.
"""

from __future__ import annotations

from fastapi import APIRouter

import gkd_catalog
from api.deps import CurrentTeam
from api.errors import responses
from service.schemas import CatalogRead

router = APIRouter(prefix="/v1/catalog", tags=["models"])


@router.get(
    "",
    response_model=CatalogRead,
    summary="Methods, heads, layouts",
    description="Every distillation method with its traits (stages, how it uses the teacher, stage-1 head, "
    "whether the encoder trains in stage 2), the stage-2 and stage-1 heads, dataset layouts, reference rows "
    "and job phases: the values a JobSpec and a dataset registration accept.",
    responses=responses(401),
)
def get_catalog(team: CurrentTeam) -> CatalogRead:
    return CatalogRead.model_validate(gkd_catalog.as_json())
