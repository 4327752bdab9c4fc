"""Mapillary Vistas v1.2 labels (Neuhold et al., ICCV 2017): 66 class ids -> the 19 Cityscapes train ids.

Vistas v1.2 label PNGs hold one class id per pixel (0..65, as palette indices); ``VISTAS_V12_CLASSES``
lists them in id order, as in the release's config.json. The mapping to Cityscapes is the one the
domain-generalisation benchmarks use, so results compare with theirs: RobustNet (Choi et al., CVPR
2021; github.com/shachoi/RobustNet, datasets/mapillary.py, ``gen_id_to_ignore``) and, with the same
ids, the VFM benchmark of tue-mps/benchmark-vfm-ss (datasets/mappings.py, ``get_mapillary_mapping``).
Everything else (bike lane, crosswalk, parking, bridge, street light, traffic-sign back and frame,
caravan, trailer, ...) becomes 255 (ignore). Some converters map more classes (e.g. bike lane and
service lane to road); this table deliberately follows the DG benchmarks.
"""

from __future__ import annotations

import numpy as np

from gkd_core.data.cityscapes_labels import CITYSCAPES_CLASSES, IGNORE_INDEX

VISTAS_V12_CLASSES: tuple[str, ...] = (
    "animal--bird",
    "animal--ground-animal",
    "construction--barrier--curb",
    "construction--barrier--fence",
    "construction--barrier--guard-rail",
    "construction--barrier--other-barrier",
    "construction--barrier--wall",
    "construction--flat--bike-lane",
    "construction--flat--crosswalk-plain",
    "construction--flat--curb-cut",
    "construction--flat--parking",  # 10
    "construction--flat--pedestrian-area",
    "construction--flat--rail-track",
    "construction--flat--road",
    "construction--flat--service-lane",
    "construction--flat--sidewalk",
    "construction--structure--bridge",
    "construction--structure--building",
    "construction--structure--tunnel",
    "human--person",
    "human--rider--bicyclist",  # 20
    "human--rider--motorcyclist",
    "human--rider--other-rider",
    "marking--crosswalk-zebra",
    "marking--general",
    "nature--mountain",
    "nature--sand",
    "nature--sky",
    "nature--snow",
    "nature--terrain",
    "nature--vegetation",  # 30
    "nature--water",
    "object--banner",
    "object--bench",
    "object--bike-rack",
    "object--billboard",
    "object--catch-basin",
    "object--cctv-camera",
    "object--fire-hydrant",
    "object--junction-box",
    "object--mailbox",  # 40
    "object--manhole",
    "object--phone-booth",
    "object--pothole",
    "object--street-light",
    "object--support--pole",
    "object--support--traffic-sign-frame",
    "object--support--utility-pole",
    "object--traffic-light",
    "object--traffic-sign--back",
    "object--traffic-sign--front",  # 50
    "object--trash-can",
    "object--vehicle--bicycle",
    "object--vehicle--boat",
    "object--vehicle--bus",
    "object--vehicle--car",
    "object--vehicle--caravan",
    "object--vehicle--motorcycle",
    "object--vehicle--on-rails",
    "object--vehicle--other-vehicle",
    "object--vehicle--trailer",  # 60
    "object--vehicle--truck",
    "object--vehicle--wheeled-slow",
    "void--car-mount",
    "void--ego-vehicle",
    "void--unlabeled",  # 65
)

# Cityscapes class -> the Vistas classes merged into it.
_TO_CITYSCAPES: dict[str, tuple[str, ...]] = {
    "road": ("construction--flat--road", "marking--general", "object--manhole"),
    "sidewalk": ("construction--barrier--curb", "construction--flat--sidewalk"),
    "building": ("construction--structure--building",),
    "wall": ("construction--barrier--wall",),
    "fence": ("construction--barrier--fence",),
    "pole": ("object--support--pole", "object--support--utility-pole"),
    "traffic light": ("object--traffic-light",),
    "traffic sign": ("object--traffic-sign--front",),
    "vegetation": ("nature--vegetation",),
    "terrain": ("nature--terrain",),
    "sky": ("nature--sky",),
    "person": ("human--person",),
    "rider": ("human--rider--bicyclist", "human--rider--motorcyclist", "human--rider--other-rider"),
    "car": ("object--vehicle--car",),
    "truck": ("object--vehicle--truck",),
    "bus": ("object--vehicle--bus",),
    "train": ("object--vehicle--on-rails",),
    "motorcycle": ("object--vehicle--motorcycle",),
    "bicycle": ("object--vehicle--bicycle",),
}

VISTAS_ID_TO_TRAIN_ID: dict[int, int] = {
    VISTAS_V12_CLASSES.index(vistas): CITYSCAPES_CLASSES.index(city)
    for city, merged in _TO_CITYSCAPES.items()
    for vistas in merged
}


def vistas_lut() -> np.ndarray:
    """A 256-entry uint8 lookup table: ``lut[vistas_id] == cityscapes train id`` (255 for the rest)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for vistas_id, train_id in VISTAS_ID_TO_TRAIN_ID.items():
        lut[vistas_id] = train_id
    return lut
