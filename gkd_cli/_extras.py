"""Which optional dependency sets (pyproject extras) a local command needs, checked before it imports them.

The base install is the HTTP client and the command line. ``server`` adds the API and service stack,
``worker`` adds the ML stack on top of it. A command that runs part of the server on this machine calls
:func:`require` first, so a light install prints one line naming the extra instead of a traceback.
"""

from __future__ import annotations

import importlib.util

from gkd_cli import output

DISTRIBUTION = "gkd-distill"

# Top-level modules each extra provides (only what the extra adds; ``worker`` includes ``server`` in
# pyproject). tests/gkd_cli/test_extras.py keeps this in step with pyproject's extras.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "server": (
        "fastapi", "uvicorn", "pydantic", "pydantic_settings", "sqlalchemy", "alembic", "psycopg", "boto3",
        "celery", "redis", "prometheus_client", "numpy", "PIL",
    ),
    "worker": ("torch", "timm", "safetensors", "onnx", "onnxruntime", "onnxscript", "tensorboardX", "matplotlib"),
}


def missing_module(extra: str) -> str | None:
    """The first module of ``extra`` that cannot be imported here, or None when all are present."""
    for name in EXTRA_MODULES[extra]:
        if importlib.util.find_spec(name) is None:
            return name
    return None


def require(command: str, *extras: str) -> None:
    """Exit with one ``error:`` line naming the install command when any of ``extras`` is missing.

    Only looks the modules up (no import), so the check costs milliseconds even on a full install.
    """
    for extra in extras:
        name = missing_module(extra)
        if name is not None:
            wanted = ",".join(extras)
            noun = "extra" if len(extras) == 1 else "extras"
            output.fail(
                f"gkd {command} needs the {' and '.join(extras)} {noun} ({name} is not installed): "
                f"pip install '{DISTRIBUTION}[{wanted}]'"
            )
