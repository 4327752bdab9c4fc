"""The torch-free catalogue (gkd_catalog) and gkd_core's registries name the same things.

The API builds its JobSpec enums from the catalogue and the worker runs gkd_core, so a method,
head, layout or phase known to one side only would be accepted by the API and then fail in the
worker as if it were the user's fault. Adding a method means one gkd_core module plus one
catalogue entry; this test is what ties the two together.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import ClassVar

import pytest

import gkd_catalog
from gkd_core.data.layouts import LAYOUTS, layout_catalogue
from gkd_core.engine.callbacks import Phase
from gkd_core.experiment import REFERENCES
from gkd_core.losses.qsd import TOKEN_HEADS
from gkd_core.methods import STAGE2, DistillMethod, MethodTraits, _registry, get_method, list_methods, register_method
from gkd_core.models.heads import HEADS
from service.schemas import DatasetCreate, JobSpec
from worker.progress import PHASE_WEIGHTS


def _names(kind: str, catalogue: object, core: object) -> list[str]:
    a, b = list(catalogue), list(core)  # type: ignore[call-overload]
    if set(a) == set(b):
        return []
    return [f"{kind}: only in gkd_catalog {sorted(set(a) - set(b))}, only in gkd_core {sorted(set(b) - set(a))}"]


def mismatches() -> list[str]:
    """Every disagreement between the catalogue and gkd_core, as readable lines."""
    found = _names("methods", gkd_catalog.METHODS, list_methods())
    for name in set(gkd_catalog.METHODS) & set(list_methods()):
        core = asdict(get_method(name).traits)
        listed = gkd_catalog.METHODS[name].traits()
        if core != listed:
            found.append(f"method {name}: gkd_catalog says {listed}, gkd_core says {core}")
    found += _names("stage-2 heads", gkd_catalog.HEADS, HEADS)
    found += _names("stage-1 heads", gkd_catalog.STAGE1_HEADS, TOKEN_HEADS)
    found += _names("layouts", gkd_catalog.LAYOUTS, LAYOUTS)
    for layout in layout_catalogue():
        entry = gkd_catalog.LAYOUTS.get(layout["name"])
        facts = (layout["labels"], tuple(layout["options"]))
        if entry is not None and (entry.labels, entry.options) != facts:
            found.append(f"layout {layout['name']}: gkd_catalog says {(entry.labels, entry.options)}, gkd_core {facts}")
    found += _names("references", gkd_catalog.REFERENCES, REFERENCES)
    if tuple(gkd_catalog.PHASES) != tuple(p.value for p in Phase):
        found.append(f"phases: gkd_catalog {gkd_catalog.PHASES}, gkd_core {[p.value for p in Phase]}")
    return found


def test_catalogue_and_gkd_core_agree() -> None:
    assert mismatches() == []


def test_every_method_traits_mention_only_known_stages_and_heads() -> None:
    for info in gkd_catalog.METHODS.values():
        assert set(info.stages) <= set(gkd_catalog.PHASES) and "stage2" in info.stages
        assert (info.stage1_head is not None) == info.two_stage
        assert info.stage1_head is None or info.stage1_head in gkd_catalog.STAGE1_HEADS


def test_the_rest_contract_is_built_from_the_catalogue() -> None:
    spec = JobSpec.model_json_schema()
    defs = spec["$defs"]
    assert spec["properties"]["method"]["enum"] == list(gkd_catalog.METHODS)
    assert defs["Stage2Spec"]["properties"]["head"]["enum"] == list(gkd_catalog.HEADS)
    assert defs["Stage1Spec"]["properties"]["head"]["enum"] == list(gkd_catalog.STAGE1_HEADS)
    assert spec["properties"]["references"]["items"]["enum"] == list(gkd_catalog.REFERENCES)
    assert DatasetCreate.model_json_schema()["properties"]["layout"]["enum"] == list(gkd_catalog.LAYOUTS)
    assert list(PHASE_WEIGHTS) == list(gkd_catalog.PHASES)


@pytest.fixture
def dummy_method() -> Iterator[type[DistillMethod]]:
    @register_method
    class Dummy(DistillMethod):
        name: ClassVar[str] = "dummy_contract_probe"
        traits: ClassVar[MethodTraits] = MethodTraits(
            stages=(STAGE2,), teacher="unused", stage1_head=None, encoder="frozen"
        )

    yield Dummy
    del _registry._METHODS[Dummy.name]


def test_a_method_registered_on_one_side_only_is_reported(dummy_method: type[DistillMethod]) -> None:
    assert mismatches() == ["methods: only in gkd_catalog [], only in gkd_core ['dummy_contract_probe']"]


def test_differing_traits_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = dict(gkd_catalog.METHODS)
    changed["proteus"] = gkd_catalog.MethodInfo(**{**asdict(changed["proteus"]), "stage1_head": "qsd"})
    monkeypatch.setattr(gkd_catalog, "METHODS", changed)
    assert [line.split(":")[0] for line in mismatches()] == ["method proteus"]
