"""Every package imports cleanly, and the API does not pull torch in."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["api", "worker", "service", "gkd_core", "client", "migrations"])
def test_package_imports(package: str) -> None:
    __import__(package)


def test_api_does_not_import_torch() -> None:
    code = "import sys; from api.main import create_app; create_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
