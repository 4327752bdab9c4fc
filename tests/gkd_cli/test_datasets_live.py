"""``gkd data register/list/show`` against a running API server that validates real folders."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

import gkd_catalog
from gkd_cli.cli import app
from gkd_cli.cli_datasets import parse_options
from gkd_cli.output import value_ranges
from gkd_client import ClientError
from gkd_core.data.synthetic import TINY_SIZES, generate_benchmark
from tests.support.live_api import LiveServer

Gkd = Callable[..., Result]


@pytest.fixture
def gkd(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Gkd:
    monkeypatch.setenv("GKD_URL", server.url)
    monkeypatch.setenv("GKD_API_KEY", server.api_key)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args))

    return run


@pytest.fixture(scope="module")
def bench(server: LiveServer) -> Path:
    """The tiny synthetic benchmark inside the server's data folder (an allowed root)."""
    root = Path(server.settings.data_dir) / "bench"
    generate_benchmark(root, seed=0, size=32, sizes=TINY_SIZES, domains=["toon", "fog"])
    return root


def _one_clean_line(result: Result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_register_list_and_show_a_valid_folder(gkd: Gkd, bench: Path) -> None:
    result = gkd("data", "register", "cli-toon", "--layout", "folder", "--uri", (bench / "toon").as_uri())
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout and "images per split" in result.stdout
    assert "label values" in result.stdout

    listed = gkd("data", "list")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if "cli-toon" in line)
    assert "folder" in row and "valid" in row and "train 8, val 4 pairs" in row

    shown = gkd("data", "show", "cli-toon")
    assert shown.exit_code == 0, shown.output
    split_rows = [line for line in shown.stdout.splitlines() if line.strip().startswith(("│ train", "│ val"))]
    assert any(" 8 " in line for line in split_rows) and any(" 4 " in line for line in split_rows)

    raw = json.loads(gkd("data", "show", "cli-toon", "--json").stdout)
    assert raw["status"] == "valid" and raw["report"]["splits"]["train"]["pairs"] == 8
    values = raw["report"]["splits"]["train"]["label_values"]
    assert value_ranges(values) in shown.stdout  # the label values, as ranges
    names = json.loads(gkd("data", "list", "--json").stdout)["items"]
    assert "cli-toon" in [d["name"] for d in names]


def test_an_invalid_folder_is_registered_and_its_problems_shown(gkd: Gkd, bench: Path, server: LiveServer) -> None:
    broken = Path(server.settings.data_dir) / "broken"
    shutil.copytree(bench / "fog", broken)
    mask = sorted((broken / "masks" / "val").iterdir())[0]
    mask.unlink()
    result = gkd("data", "register", "cli-broken", "--layout", "folder", "--uri", broken.as_uri())
    assert result.exit_code == 1
    assert "invalid" in result.stdout and "problems" in result.stdout
    assert "missing_mask" in result.stdout and mask.stem in result.stdout

    shown = gkd("data", "show", "cli-broken")
    assert shown.exit_code == 0 and "missing_mask" in shown.stdout
    assert "invalid" in json.loads(gkd("data", "register", "cli-broken", "--layout", "folder", "--uri",
                                       broken.as_uri(), "--json").stdout)["status"]


def test_images_only_sets_show_image_sizes(gkd: Gkd, server: LiveServer) -> None:
    root = Path(server.settings.data_dir) / "photos"
    (root / "train").mkdir(parents=True)
    for index, (w, h) in enumerate([(40, 30), (64, 48), (80, 30)]):
        Image.new("RGB", (w, h), (index * 40, 90, 120)).save(root / "train" / f"p{index}.png")
    result = gkd("data", "register", "cli-photos", "--layout", "images", "--uri", root.as_uri())
    assert result.exit_code == 0, result.output
    assert "images only" in result.stdout and "width (px)" in result.stdout
    assert "40-80 (median 64)" in result.stdout and "30-48 (median 30)" in result.stdout
    assert "label values" not in result.stdout
    listed = gkd("data", "list").stdout
    assert any("cli-photos" in line and "images only" in line for line in listed.splitlines())


def test_bad_input_prints_one_line(gkd: Gkd, bench: Path) -> None:
    assert "404" in _one_clean_line(gkd("data", "show", "no-such-set"))
    line = _one_clean_line(gkd("data", "register", "x", "--layout", "nope", "--uri", bench.as_uri()))
    assert "layout" in line
    line = _one_clean_line(
        gkd("data", "register", "x", "--layout", "acdc", "--uri", bench.as_uri(), "--option", "colour=red")
    )
    assert "no option 'colour'" in line and "condition" in line
    assert "KEY=VALUE" in _one_clean_line(gkd("data", "register", "x", "--layout", "folder", "--uri", "file:///x",
                                              "--option", "justakey"))
    assert "allowed root" in _one_clean_line(gkd("data", "register", "x", "--layout", "folder", "--uri", "file:///etc"))
    assert "cannot reach" in _one_clean_line(gkd("data", "list", "--url", "http://127.0.0.1:9"))


def test_register_with_options_and_see_them_used(gkd: Gkd, bench: Path, server: LiveServer) -> None:
    root = Path(server.settings.data_dir) / "toon-mmseg"  # mmseg layout, no classes.json: classes come by option
    for split in ("train", "val"):
        shutil.copytree(bench / "toon" / "images" / split, root / "img_dir" / split)
        shutil.copytree(bench / "toon" / "masks" / split, root / "ann_dir" / split)
    names = json.loads((bench / "toon" / "classes.json").read_text())["names"]
    without = gkd("data", "register", "cli-mm", "--layout", "mmseg", "--uri", root.as_uri())
    assert without.exit_code == 1 and "classes.json" in without.stdout
    listed = "[" + ", ".join(names) + "]"
    options = ["--option", f"classes={listed}", "--option", "reduce_zero_label=false"]
    result = gkd("data", "register", "cli-mm", "--layout", "mmseg", "--uri", root.as_uri(), *options)
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout and "reduce_zero_label=False" in result.stdout
    raw = json.loads(gkd("data", "show", "cli-mm", "--json").stdout)
    assert raw["options"] == {"classes": names, "reduce_zero_label": False}
    assert raw["report"]["classes"]["names"] == names and raw["report"]["splits"]["train"]["pairs"] == 8


def test_options_are_read_as_yaml_scalars() -> None:
    assert parse_options(["condition=fog", "label_type=train_id"], "acdc") == {
        "condition": "fog",
        "label_type": "train_id",
    }
    assert parse_options(["reduce_zero_label=true", "classes=[a, b]"], "mmseg") == {
        "reduce_zero_label": True,
        "classes": ["a", "b"],
    }
    assert parse_options(["anything=1"], "a-layout-this-client-does-not-know") == {"anything": 1}
    with pytest.raises(ClientError, match="takes no options"):
        parse_options(["x=1"], "folder")


def test_help_names_every_layout_and_its_options(gkd: Gkd) -> None:
    text = gkd("data", "register", "--help").stdout
    for info in gkd_catalog.LAYOUTS.values():
        assert info.name in text
        for option in info.options:
            assert option in text


def test_delete_forgets_a_dataset_and_a_missing_name_is_one_line(gkd: Gkd, bench: Path) -> None:
    registered = gkd("data", "register", "cli-doomed", "--layout", "folder", "--uri", (bench / "fog").as_uri())
    assert registered.exit_code == 0, registered.output
    deleted = gkd("data", "delete", "cli-doomed")
    assert deleted.exit_code == 0, deleted.output
    assert "deleted dataset cli-doomed" in deleted.stdout and "files are untouched" in deleted.stdout
    assert "cli-doomed" not in gkd("data", "list").stdout
    assert (bench / "fog").is_dir()
    assert "no dataset 'cli-doomed'" in _one_clean_line(gkd("data", "delete", "cli-doomed"))
