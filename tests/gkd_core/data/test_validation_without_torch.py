"""The API image has no torch: dataset validation must import and run with numpy and PIL alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.gkd_core.data.fixtures import folder


def test_validate_dataset_runs_with_torch_unavailable(tmp_path: Path) -> None:
    root = folder(tmp_path / "folder")
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any 'import torch' now raises ImportError
        "from gkd_core.data.validation import validate_dataset\n"
        f"report = validate_dataset({str(root)!r}, 'folder')\n"
        "assert report.ok, report.problems\n"
        "assert not any(name == 'torch' or name.startswith(('torch.', 'timm')) for name in sys.modules"
        " if sys.modules[name] is not None)\n"
        "print('validated without torch')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "validated without torch" in result.stdout


def test_layout_catalogue_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from gkd_core.data.layouts import LAYOUTS, layout_catalogue\n"
        "assert [entry['name'] for entry in layout_catalogue()] == list(LAYOUTS)\n"
        "print('catalogue without torch')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "catalogue without torch" in result.stdout
