"""Each image copies every package its code imports (service imports gkd_catalog, so both images need it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _packages() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}


@pytest.mark.parametrize(("image", "left_out"), [("api", {"worker"}), ("worker", set())])
def test_image_copies_every_package_it_needs(image: str, left_out: set[str]) -> None:
    text = (ROOT / "docker" / f"{image}.Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, flags=re.MULTILINE))
    missing = _packages() - left_out - copied
    assert not missing, f"docker/{image}.Dockerfile lacks COPY for {sorted(missing)}"
