"""Images named by a list file per split: ``{split}.txt`` in the root, one path relative to the root a line.

::

    root/train.txt      a/0001.jpg            (blank lines and lines starting with # are skipped;
    root/a/0001.jpg     b/0002.png 17          "path label" lines use the path before the space)

A path must stay inside the root (no absolute paths, no ``..`` out of it). Listed files that do not
exist are kept as entries without an image (validation reports them; reading skips them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from gkd_core.data.layouts._images import ImageSetLayout, is_image
from gkd_core.data.layouts._listing import Sample
from gkd_core.data.layouts._registry import register_layout
from gkd_core.errors import DatasetError


@register_layout
class ImageList(ImageSetLayout):
    name = "image_list"
    description = "images only: {split}.txt in the root lists image paths relative to the root, one per line"

    def splits(self, root: Path, **options: Any) -> list[str]:
        if not root.is_dir():
            return []
        # README.txt or LICENSE.txt in the root are not splits: the first entry must name an image file.
        return sorted(p.stem for p in root.glob("*.txt") if p.is_file() and is_image(Path(_first_entry(p) or "")))

    def images(self, root: Path, split: str, **options: Any) -> list[Sample]:
        path = root / f"{split}.txt"
        if not path.is_file():
            raise DatasetError(f"split {split!r} not found in image_list dataset {root} (no {path}); "
                               f"splits: {self.splits(root)}")
        samples: list[Sample] = []
        seen: set[str] = set()
        for number, rel in _entries(path):
            where = f"{path.name} line {number}"
            pure = PurePosixPath(rel.replace("\\", "/"))
            if pure.is_absolute() or ".." in pure.parts:
                raise DatasetError(f"{where}: {rel!r} is not a path inside the dataset root; list paths relative "
                                   f"to {root}")
            name = pure.with_suffix("").as_posix()
            if name in seen:
                continue
            seen.add(name)
            file = root / pure
            samples.append(Sample(name=name, image=file if file.is_file() else None, mask=None))
        return samples

    def detect(self, root: Path) -> float:
        for path in sorted(root.glob("*.txt")) if root.is_dir() else []:
            first = _first_entry(path)
            if first is not None and is_image(Path(first)) and (root / first).is_file():
                return 0.6
        return 0.0


def _entries(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, path)`` of every entry, read lazily (ImageNet's train list has 1.28M lines)."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                # "path label" lines: the path is the text before the first space, unless the whole
                # line names a file (a path with spaces).
                if len(text.split()) > 1 and not (path.parent / text).is_file():
                    text = text.split()[0]
                yield number, text
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read list file {path}: {exc}") from exc


def _first_entry(path: Path) -> str | None:
    try:
        first = next(_entries(path), None)
    except DatasetError:
        return None
    return None if first is None else first[1]
