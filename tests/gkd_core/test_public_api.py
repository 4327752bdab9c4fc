"""Every name gkd_core exports resolves, and importing the package alone does not load timm."""

from __future__ import annotations

import subprocess
import sys

import gkd_core


def test_every_exported_name_resolves() -> None:
    missing = [name for name in gkd_core.__all__ if getattr(gkd_core, name, None) is None]
    assert missing == []


def test_import_is_lazy() -> None:
    code = "import sys, gkd_core; print('timm' in sys.modules, 'gkd_core.experiment' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
