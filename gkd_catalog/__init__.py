"""The names every part of GKD Distill must agree on, readable without torch.

The API (JobSpec enums, spec checks, the dashboard's submit form), the worker (its phase list),
the `gkd` command line (help text) and the docs are built from this catalogue; gkd_core keeps the
implementations in its own registries, and a contract test (tests/test_catalog_contract.py) fails
when the two disagree. Only the standard library is imported here, so the light client install,
the torch-free API image and gkd_core can all read it.
"""

from __future__ import annotations

from gkd_catalog.components import (
    HEADS,
    LAYOUTS,
    PHASES,
    REFERENCES,
    STAGE1_HEADS,
    Entry,
    LayoutInfo,
    job_phases,
)
from gkd_catalog.methods import METHODS, EncoderMode, MethodInfo, ProxyUse, TeacherUse, method
from gkd_catalog.schedule import steps_for_epochs

__all__ = [
    "HEADS",
    "LAYOUTS",
    "METHODS",
    "PHASES",
    "REFERENCES",
    "STAGE1_HEADS",
    "EncoderMode",
    "Entry",
    "LayoutInfo",
    "MethodInfo",
    "ProxyUse",
    "TeacherUse",
    "as_json",
    "job_phases",
    "method",
    "steps_for_epochs",
]


def as_json() -> dict[str, object]:
    """The whole catalogue as plain JSON (served by GET /v1/catalog for the dashboard)."""
    return {
        "methods": [m.to_json() for m in METHODS.values()],
        "heads": [e.to_json() for e in HEADS.values()],
        "stage1_heads": [e.to_json() for e in STAGE1_HEADS.values()],
        "layouts": [e.to_json() for e in LAYOUTS.values()],
        "references": [e.to_json() for e in REFERENCES.values()],
        "phases": list(PHASES),
    }
