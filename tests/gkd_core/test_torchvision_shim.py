"""gkd_core/_compat.py declares torchvision's op schemas only where torchvision's own extension cannot load.

Each case runs in a fresh interpreter with a stand-in ``torchvision`` package first on the path: one whose
``_C`` extension loads (a matched torch/torchvision pair, as on a GPU machine, where declaring the namespace
first would abort the process when the real extension registers it), one whose extension is unloadable (the
CPU torch here), and none at all.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
if sys.argv[2] == "registers":  # stand in for a matched build: loading the extension registers the ops
    load = torch.ops.load_library
    kept = []
    def load_and_register(path):
        load(path)
        kept.append(torch.library.Library("torchvision", "DEF"))
        kept[0].define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    torch.ops.load_library = load_and_register
import gkd_core._compat as shim
try:
    torch.ops.torchvision.nms
    registered = True
except (AttributeError, RuntimeError):
    registered = False
loaded = sorted(p for p in torch.ops.loaded_libraries if p.startswith(sys.argv[1]))
print(json.dumps({"declared": shim._library is not None, "nms": registered, "loaded": loaded}))
"""

def _loadable_shared_object() -> Path:
    """Any shared object the loader accepts (a compiled stdlib module): it stands in for a fitting extension."""
    for name in ("_ctypes", "_decimal", "_json", "math", "select"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".so"):
            return Path(spec.origin)
    pytest.fail("no compiled stdlib module to stand in for torchvision's extension")


def _probe(path_dir: Path, mode: str = "plain") -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path_dir), mode], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _fake_torchvision(root: Path, extension: bytes | Path) -> Path:
    package = root / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    target = package / "_C.so"
    if isinstance(extension, Path):
        shutil.copyfile(extension, target)
    else:
        target.write_bytes(extension)
    return target


def test_a_fitting_extension_is_loaded_and_nothing_is_declared(tmp_path: Path) -> None:
    extension = _fake_torchvision(tmp_path, _loadable_shared_object())
    result = _probe(tmp_path, "registers")
    assert result == {"declared": False, "nms": True, "loaded": [str(extension)]}


def test_an_extension_that_loads_but_registers_nothing_gets_the_schemas_declared(tmp_path: Path) -> None:
    extension = _fake_torchvision(tmp_path, _loadable_shared_object())
    result = _probe(tmp_path)
    assert result == {"declared": True, "nms": True, "loaded": [str(extension)]}


def test_an_unloadable_extension_gets_the_schemas_declared(tmp_path: Path) -> None:
    _fake_torchvision(tmp_path, b"not a shared object")
    result = _probe(tmp_path)
    assert result["declared"] is True and result["nms"] is True and result["loaded"] == []


def test_without_torchvision_nothing_is_declared(tmp_path: Path) -> None:
    blocker = tmp_path / "torchvision.py"  # shadows an installed torchvision: find_spec sees a plain module
    blocker.write_text("")
    result = _probe(tmp_path)
    assert result["declared"] is False and result["loaded"] == []
