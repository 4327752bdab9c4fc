"""Render the catalogue as docs/CATALOG.md: ``python -m gkd_catalog.markdown > docs/CATALOG.md``.

tests/test_catalog_docs.py fails when the page and the catalogue differ, so the docs never drift.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from gkd_catalog.components import HEADS, LAYOUTS, PHASES, REFERENCES, STAGE1_HEADS, Entry
from gkd_catalog.methods import METHODS


def _entries(title: str, table: Mapping[str, Entry], field: str) -> list[str]:
    lines = [f"## {title}", "", f"| {field} | what it is |", "|---|---|"]
    lines += [f"| `{e.name}` | {e.summary} |" for e in table.values()]
    return [*lines, ""]


def render() -> str:
    """The whole page as markdown."""
    lines = [
        "# Catalogue: methods, heads, layouts",
        "",
        "Generated from `gkd_catalog` by `python -m gkd_catalog.markdown > docs/CATALOG.md`; do not edit by hand.",
        "These are exactly the values a JobSpec (`method`, `stage1.head`, `stage2.head`, `references`) and a",
        "dataset registration (`layout`) accept; `GET /v1/catalog` serves the same data.",
        "",
        "## Methods",
        "",
        "| method | stages | teacher | stage-1 head | encoder in stage 2 | proxy set | what it does |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in METHODS.values():
        head = m.stage1_head or "-"
        lines.append(
            f"| `{m.name}` | {' + '.join(m.stages)} | {m.teacher} | {head} | {m.encoder} | {m.proxy} | {m.summary} |"
        )
    lines += [
        "",
        "Teacher: `tokens` distils the teacher's final-layer tokens in stage 1 (a ViT teacher is required);",
        "`logits` trains the teacher's own head on the source first and distils its logits; `features` uses the",
        "teacher's tokens as a target while stage 2 trains; `unused` needs no teacher. Encoder `either`: the",
        "spec's `stage2.finetune` picks. Proxy set: `optional` runs step 1a when a proxy is given, `only` distils",
        "on the proxy set alone (required), `unused` has no stage 1.",
        "",
    ]
    lines += _entries("Stage-2 heads (`stage2.head`)", HEADS, "head")
    lines += _entries("Stage-1 token heads (`stage1.head`)", STAGE1_HEADS, "head")
    lines += ["## Dataset layouts", "", "| layout | labels | options | where files live |", "|---|---|---|---|"]
    for layout in LAYOUTS.values():
        options = ", ".join(f"`{o}`" for o in layout.options) or "-"
        lines.append(f"| `{layout.name}` | {'yes' if layout.labels else 'no'} | {options} | {layout.summary} |")
    lines.append("")
    lines += _entries("Reference rows (`references`)", REFERENCES, "reference")
    lines += ["## Job phases", "", " -> ".join(f"`{p}`" for p in PHASES), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
