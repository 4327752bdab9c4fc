"""gkd_core: Generalizable Knowledge Distillation (Lv et al., CVPR 2026) as a plain PyTorch library.

It knows nothing of HTTP, SQL, Celery or environment variables: typed configs and callbacks go
in, results come out, and everything runs in a notebook.
"""

from gkd_core import _compat  # noqa: F401  (must come first: makes torchvision/timm importable)

__version__ = "0.1.0"

__all__ = ["__version__"]
