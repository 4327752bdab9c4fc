"""``gkd data ...``: local dataset helpers (synthetic benchmark generation, layout validation).

The remote commands of the same group (``register``, ``list``, ``show``) live in cli_datasets.py. Here,
gkd_core is imported inside the commands so ``gkd --help`` stays fast and torch-free, and a light install
(no ``server`` extra: no numpy or PIL) gets one line naming the extra instead of a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gkd_cli._extras import require

data_app = typer.Typer(
    help="Datasets: register, list and show them on a server; generate the synthetic benchmark and validate "
    "layouts on this machine.",
    no_args_is_help=True,
)
_out = Console()
_err = Console(stderr=True)
EXIT_INVALID = 1
EXIT_USAGE = 2


@data_app.callback()
def _data() -> None:
    """Dataset commands."""


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    _err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives identical files.")] = 0,
    size: Annotated[int, typer.Option(help="Image side in pixels (64-128 intended).")] = 96,
    source_train: Annotated[int | None, typer.Option(help="Source (toon) train images.")] = None,
    source_val: Annotated[int | None, typer.Option(help="Source (toon) val images.")] = None,
    target_train: Annotated[int | None, typer.Option(help="Train images per target domain (0 = none).")] = None,
    target_val: Annotated[int | None, typer.Option(help="Val images per target domain.")] = None,
    pool_train: Annotated[int | None, typer.Option(help="Style-pool train images (teacher pretraining).")] = None,
    pool_val: Annotated[int | None, typer.Option(help="Style-pool val images.")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A few images per split (smoke tests).")] = False,
    preview: Annotated[Path | None, typer.Option(help="Also write a PNG grid of every domain here.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Report a colour-only classifier's mIoU per domain.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print benchmark.json instead of a table.")] = False,
) -> None:
    """Generate the synthetic multi-domain segmentation benchmark (source, targets, style pool)."""
    require("data synth", "server", *(("worker",) if check else ()))  # --check reads the data through torch
    from dataclasses import replace

    from gkd_core.data.synthetic import TINY_SIZES, BenchmarkSizes, generate_benchmark
    from gkd_core.errors import GKDError

    sizes = TINY_SIZES if tiny else BenchmarkSizes()
    given = {"source_train": source_train, "source_val": source_val, "target_train": target_train,
             "target_val": target_val, "pool_train": pool_train, "pool_val": pool_val}
    sizes = replace(sizes, **{k: v for k, v in given.items() if v is not None})
    try:
        info = generate_benchmark(out, seed=seed, size=size, sizes=sizes)
        if preview is not None:
            from gkd_core.data.synthetic_preview import domain_grid

            domain_grid(preview, seed=seed, size=size)
    except (GKDError, OSError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
    else:
        table = Table(title=f"synthetic benchmark in {out} (seed {seed}, {size} px, {info.seconds:.1f} s)")
        for col in ("domain", "role", "splits", "style"):
            table.add_column(col)
        for d in info.domains.values():
            table.add_row(d.name, d.role, ", ".join(f"{k} {v}" for k, v in d.splits.items()), escape(d.style))
        _out.print(table)
    if check:
        from gkd_core.data.shortcut import colour_shortcut_miou

        scores = colour_shortcut_miou(out, fit_domain=info.source)
        _out.print("colour-only classifier fitted on the source, mIoU per domain: "
                   + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))


@data_app.command("validate")
def validate(
    root: Annotated[Path, typer.Argument(help="Dataset directory.")],
    layout: Annotated[str, typer.Option("--layout", help="cityscapes|gta5|acdc|bdd100k|mapillary|mmseg|folder")],
    split: Annotated[list[str] | None, typer.Option("--split", help="Split(s) to check (default: all found).")] = None,
    label_sample: Annotated[int, typer.Option(help="Decode at most N label files per split (0 = all).")] = 500,
    deep: Annotated[bool, typer.Option("--deep", help="Fully decode every image too.")] = False,
    condition: Annotated[str | None, typer.Option(help="acdc: fog|night|rain|snow|all.")] = None,
    reduce_zero_label: Annotated[bool, typer.Option("--reduce-zero-label", help="mmseg: 0 -> ignore.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a dataset directory; exit 1 when problems are found."""
    require("data validate", "server")
    from gkd_core.data.validation import validate_dataset
    from gkd_core.errors import DatasetError

    options: dict[str, Any] = {}
    if condition is not None:
        options["condition"] = condition
    if reduce_zero_label:
        options["reduce_zero_label"] = True
    try:
        report = validate_dataset(root, layout, splits=split or None, label_sample=label_sample or None, deep=deep,
                                  **options)
    except DatasetError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"{layout} dataset {root}")
        for col in ("split", "images", "masks", "pairs", "masks checked"):
            table.add_column(col)
        for name, rep in report.splits.items():
            table.add_row(name, str(rep.images), str(rep.masks), str(rep.pairs), str(rep.masks_checked))
        _out.print(table)
        for problem in report.problems[:20]:
            _out.print(f"[yellow]{escape(str(problem))}[/yellow]")
        _out.print("[green]ok[/green]" if report.ok else f"[red]{escape(report.summary(limit=3))}[/red]")
    if not report.ok:
        raise typer.Exit(EXIT_INVALID)
