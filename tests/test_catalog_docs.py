"""docs/CATALOG.md is the catalogue rendered: a stale page fails here (regenerate it, never by hand)."""

from __future__ import annotations

from pathlib import Path

import gkd_catalog
from gkd_catalog.markdown import render

PAGE = Path(__file__).resolve().parents[1] / "docs" / "CATALOG.md"


def test_catalog_page_is_current() -> None:
    assert PAGE.is_file(), "docs/CATALOG.md is missing: python -m gkd_catalog.markdown > docs/CATALOG.md"
    assert PAGE.read_text() == render(), "docs/CATALOG.md is stale: python -m gkd_catalog.markdown > docs/CATALOG.md"


def test_page_names_every_method_and_head() -> None:
    text = render()
    for name in [*gkd_catalog.METHODS, *gkd_catalog.HEADS, *gkd_catalog.LAYOUTS]:
        assert f"`{name}`" in text
