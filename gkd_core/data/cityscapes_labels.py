"""The Cityscapes label table: 34 label ids -> the 19 train ids used by GTAV/Cityscapes/ACDC/BDD/Mapillary.

Written from the public Cityscapes label definition (Cordts et al., CVPR 2016): the 19 evaluated
classes keep their train ids 0..18, every other label id (void, ground, parking, rail track,
guard rail, bridge, tunnel, polegroup, caravan, trailer, license plate) becomes 255 (ignore).
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255

# (label id, train id, name, RGB colour) for the 19 evaluated classes, in train-id order.
_TRAIN_CLASSES: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (7, "road", (128, 64, 128)),
    (8, "sidewalk", (244, 35, 232)),
    (11, "building", (70, 70, 70)),
    (12, "wall", (102, 102, 156)),
    (13, "fence", (190, 153, 153)),
    (17, "pole", (153, 153, 153)),
    (19, "traffic light", (250, 170, 30)),
    (20, "traffic sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)),
    (22, "terrain", (152, 251, 152)),
    (23, "sky", (70, 130, 180)),
    (24, "person", (220, 20, 60)),
    (25, "rider", (255, 0, 0)),
    (26, "car", (0, 0, 142)),
    (27, "truck", (0, 0, 70)),
    (28, "bus", (0, 60, 100)),
    (31, "train", (0, 80, 100)),
    (32, "motorcycle", (0, 0, 230)),
    (33, "bicycle", (119, 11, 32)),
)

CITYSCAPES_CLASSES: list[str] = [name for _, name, _ in _TRAIN_CLASSES]
CITYSCAPES_PALETTE: list[tuple[int, int, int]] = [rgb for _, _, rgb in _TRAIN_CLASSES]
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {label_id: train_id for train_id, (label_id, _, _) in enumerate(_TRAIN_CLASSES)}


def label_id_lut() -> np.ndarray:
    """A 256-entry uint8 lookup table: ``lut[label_id] == train_id`` (255 for everything not evaluated)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


def label_ids_to_train_ids(labels: np.ndarray) -> np.ndarray:
    """Map an array of Cityscapes label ids (any integer dtype) to train ids (uint8, 255 = ignore)."""
    labels = np.asarray(labels)
    out = np.full(labels.shape, IGNORE_INDEX, dtype=np.uint8)
    in_range = (labels >= 0) & (labels < 256)
    out[in_range] = label_id_lut()[labels[in_range]]
    return out
