"""stage2.finetune: only method none may fine-tune its encoder."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.schemas import JobSpec


def _spec(method: str, finetune: bool) -> dict[str, Any]:
    return {
        "name": "t",
        "teacher": {"model": "vit_small_patch14_dinov2"},
        "student": {"model": "deit_tiny_patch16_224"},
        "source": {"dataset": "pool"},
        "targets": [{"dataset": "toon", "split": "val"}],
        "method": method,
        "stage2": {"finetune": finetune},
    }


def test_method_none_may_finetune() -> None:
    assert JobSpec.model_validate(_spec("none", True)).stage2.finetune is True


def test_other_methods_may_not_finetune() -> None:
    with pytest.raises(ValidationError, match=r"stage2\.finetune applies to method 'none' only"):
        JobSpec.model_validate(_spec("gkd", True))
