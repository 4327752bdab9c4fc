"""The base class every dataset layout implements, and the description of a layout option."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gkd_core.data.layouts._files import require_dirs
from gkd_core.data.layouts._listing import SplitListing
from gkd_core.errors import DatasetError


@dataclass(frozen=True)
class LayoutOption:
    """One keyword option a layout accepts (``open_dataset(..., name=value)``).

    ``choices`` lists the accepted string values (None: any value of the documented type) and
    ``default`` is the value used when the option is left out.
    """

    name: str
    description: str
    choices: tuple[str, ...] | None = None
    default: Any = None

    def describe(self) -> dict[str, Any]:
        choices = None if self.choices is None else list(self.choices)
        return {"description": self.description, "choices": choices, "default": self.default}


class Layout:
    """Where one dataset release keeps its images and labels, and what the label values mean.

    Subclasses set ``name``, ``description`` (one line), ``options``, ``labels`` (False for
    images-only sets) and ``required_dirs``, implement ``splits``, ``list_split`` and ``detect``, and
    register with ``@register_layout``. The module-level functions in ``gkd_core.data.layouts`` check
    the options (``check_options``) before calling the methods, so the methods may assume them valid.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[tuple[LayoutOption, ...]] = ()
    labels: ClassVar[bool] = True
    required_dirs: ClassVar[tuple[str, ...]] = ()

    def splits(self, root: Path, **options: Any) -> list[str]:
        """The split names present under ``root`` (e.g. ``["train", "val"]``)."""
        raise NotImplementedError

    def check_structure(self, root: Path) -> None:
        """Raise DatasetError (naming missing folders and a likely layout) unless ``root`` fits."""
        require_dirs(root, self.name, *self.required_dirs)

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        """Resolve one split to its samples and label mapping.

        Args:
            root: local dataset directory.
            split: split name.
            need_classes: False when the caller reads images only (no classes.json needed).
            **options: this layout's options, already checked.

        Raises:
            DatasetError: wrong structure, missing split, or missing/invalid classes.
        """
        raise NotImplementedError

    def detect(self, root: Path) -> float:
        """How surely ``root`` is in this layout: 0 for no; 1.0 for folder names only this release uses,
        about 0.5 for generic pairs such as images/ + masks/, lower for catch-alls."""
        return 0.0

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise DatasetError for an option this layout does not take or a value outside its choices."""
        accepted = {opt.name: opt for opt in self.options}
        unknown = set(options) - set(accepted)
        if unknown:
            allowed = ", ".join(sorted(accepted)) or "none"
            raise DatasetError(f"layout {self.name!r} takes no option(s) {sorted(unknown)}; allowed: {allowed}")
        for key, value in options.items():
            choices = accepted[key].choices
            if choices is not None and value not in choices:
                allowed = ", ".join(repr(c) for c in choices)
                raise DatasetError(f"{key} must be one of {allowed} for layout {self.name!r}, got {value!r}")

    def describe(self) -> dict[str, Any]:
        """JSON-ready ``{"name", "description", "labels", "options"}`` (see ``layout_catalogue``)."""
        return {
            "name": self.name,
            "description": self.description,
            "labels": self.labels,
            "options": {opt.name: opt.describe() for opt in self.options},
        }
