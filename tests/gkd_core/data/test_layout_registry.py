"""The layout registry: lookup with suggestions, registration order, the catalogue, custom layouts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gkd_core.data import LAYOUTS, detect_layout, get_layout, layout_catalogue, list_layouts, open_dataset
from gkd_core.data.layouts import Layout, LayoutOption, SplitListing, _registry, register_layout
from gkd_core.data.layouts._classes import class_info_from_dict
from gkd_core.data.layouts._files import PairSource, pair_samples
from gkd_core.errors import DatasetError
from tests.gkd_core.data import fixtures as fx

GKD_CORE = Path(__file__).resolve().parents[3] / "gkd_core"


def test_layouts_are_the_registered_names_in_order() -> None:
    assert LAYOUTS[:7] == ("cityscapes", "gta5", "acdc", "bdd100k", "mapillary", "mmseg", "folder")
    assert tuple(list_layouts()) == LAYOUTS
    assert all(get_layout(name).name == name for name in LAYOUTS)


def test_unknown_layout_lists_names_and_close_matches() -> None:
    suggestion = r"unknown dataset layout 'cityscape' \(did you mean 'cityscapes'\?\)"
    with pytest.raises(DatasetError, match=suggestion) as err:
        get_layout("cityscape")
    assert all(name in str(err.value) for name in LAYOUTS)
    with pytest.raises(DatasetError, match="unknown dataset layout 'voc'; choose one of cityscapes, gta5"):
        get_layout("voc")


def test_catalogue_is_json_ready_and_matches_the_layouts() -> None:
    catalogue = json.loads(json.dumps(layout_catalogue()))
    assert [entry["name"] for entry in catalogue] == list(LAYOUTS)
    for entry in catalogue:
        layout = get_layout(entry["name"])
        assert set(entry) == {"name", "description", "labels", "options"}
        assert entry["description"] and "\n" not in entry["description"]
        assert entry["labels"] is layout.labels
        assert set(entry["options"]) == {opt.name for opt in layout.options}
        for option in entry["options"].values():
            assert set(option) == {"description", "choices", "default"}
    by_name = {entry["name"]: entry for entry in catalogue}
    assert by_name["cityscapes"]["options"]["label_type"]["choices"] == ["auto", "trainIds", "labelIds"]
    assert by_name["mmseg"]["options"]["reduce_zero_label"]["default"] is False
    assert by_name["gta5"]["options"] == {}


def test_option_choices_are_checked(tmp_path: Path) -> None:
    fx.cityscapes(tmp_path)
    with pytest.raises(DatasetError, match="label_type must be one of 'auto', 'trainIds', 'labelIds'"):
        open_dataset(tmp_path, "cityscapes", "val", label_type="train")


def test_no_branch_on_a_layout_name_in_gkd_core() -> None:
    pattern = re.compile(r"\blayout\s*(==|!=|in \(|not in \()")
    hits = [
        f"{path.relative_to(GKD_CORE)}:{i}"
        for path in GKD_CORE.rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


class _Flat(Layout):
    """A test layout: pairs a.png/a.mask.png in one folder."""

    name = "test_flat"
    description = "test: <name>.png beside <name>.mask.png"
    options = (LayoutOption("shift", "add this to every label", default=0),)

    def splits(self, root: Path, **options: Any) -> list[str]:
        return ["all"]

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        source = PairSource(root, root, (".jpg",), (".mask.png",))
        classes = class_info_from_dict({"names": ["a", "b", "c"]})
        return SplitListing(layout=self.name, root=root, split=split, samples=pair_samples([source]), classes=classes)

    def detect(self, root: Path) -> float:
        return 0.9 if any(root.glob("*.mask.png")) else 0.0


@pytest.fixture
def flat_layout() -> Iterator[type[_Flat]]:
    registered = register_layout(_Flat)
    yield registered
    _registry._REGISTRY.pop(_Flat.name)


def test_a_registered_layout_is_read_detected_and_described(tmp_path: Path, flat_layout: type[_Flat]) -> None:
    for i in range(2):
        fx.save(tmp_path / f"s{i}.jpg", fx.image(i))
        fx.save(tmp_path / f"s{i}.mask.png", fx.mask([0, 1, 2]))
    assert "test_flat" in list_layouts() and "test_flat" not in LAYOUTS
    assert detect_layout(tmp_path) == "test_flat"
    ds = open_dataset(tmp_path, "test_flat", "all", shift=1)
    assert ds.names == ["s0", "s1"] and ds.num_classes == 3
    assert layout_catalogue()[-1]["options"] == {"shift": {"description": "add this to every label", "choices": None,
                                                          "default": 0}}
    with pytest.raises(DatasetError, match="takes no option"):
        open_dataset(tmp_path, "test_flat", "all", condition="fog")


def test_a_name_registers_once(flat_layout: type[_Flat]) -> None:
    register_layout(_Flat)  # the same class again is harmless (module reloads)

    class Other(_Flat):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_layout(Other)
    with pytest.raises(ValueError, match="no layout name"):
        register_layout(type("Nameless", (Layout,), {}))


def test_every_public_name_of_gkd_core_data_resolves() -> None:
    import gkd_core.data

    assert all(getattr(gkd_core.data, name) is not None for name in gkd_core.data.__all__)
