"""Class definitions of a dataset: classes.json parsing and the built-in Cityscapes 19-class set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gkd_core.data.cityscapes_labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX
from gkd_core.data.layouts._listing import ClassInfo
from gkd_core.errors import DatasetError

CITYSCAPES_INFO = ClassInfo(names=list(CITYSCAPES_CLASSES), ignore_index=IGNORE_INDEX, palette=list(CITYSCAPES_PALETTE))
# What a Cityscapes label-id file may hold: the 34 label ids (0..33) and 255.
CITYSCAPES_LABEL_ID_VALUES: frozenset[int] = frozenset(range(34)) | {IGNORE_INDEX}


def read_classes_json(path: Path) -> ClassInfo:
    """Parse classes.json: ``{"names": [...], "ignore_index": 255, "palette": [[r, g, b], ...]}``.

    Raises:
        DatasetError: missing file, bad JSON, or inconsistent fields (the message says which).
    """
    if not path.is_file():
        raise DatasetError(f'{path} is missing; write {{"names": [...], "ignore_index": 255}} there')
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path} must hold a JSON object with a 'names' list")
    return class_info_from_dict(data, where=str(path))


def class_info_from_dict(data: dict[str, Any], where: str = "classes") -> ClassInfo:
    """Build ClassInfo from a classes.json-shaped dict (``classes`` accepted as alias of ``names``)."""
    names = data.get("names", data.get("classes"))
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{where}: 'names' must be a non-empty list of class names")
    ignore = data.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or not 0 <= ignore <= 65535:
        raise DatasetError(f"{where}: 'ignore_index' must be an integer in 0..65535, got {ignore!r}")
    if ignore < len(names):
        raise DatasetError(f"{where}: ignore_index {ignore} collides with class id {ignore} ({names[ignore]!r})")
    palette_raw = data.get("palette")
    palette: list[tuple[int, int, int]] | None = None
    if palette_raw is not None:
        ok = isinstance(palette_raw, list) and len(palette_raw) == len(names)
        ok = ok and all(
            isinstance(c, list | tuple) and len(c) == 3 and all(isinstance(v, int) for v in c) for c in palette_raw
        )
        if not ok:
            raise DatasetError(f"{where}: 'palette' must list one [r, g, b] per class ({len(names)} classes)")
        palette = [(int(c[0]), int(c[1]), int(c[2])) for c in palette_raw]
    return ClassInfo(names=list(names), ignore_index=ignore, palette=palette)
