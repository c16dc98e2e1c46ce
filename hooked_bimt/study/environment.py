"""The machine a study ran on, as recorded in its report (CPU count, torch, Python, platform)."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine() -> dict[str, Any]:
    """CPU count, torch and Python versions and the platform string of this machine."""
    import torch  # here, not at the top: ``reproduce --help`` imports this module and must not load torch

    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}

