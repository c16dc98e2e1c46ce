"""The machine a study ran on, as recorded in its report (CPU count, torch, Python, platform)."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def machine() -> dict[str, Any]:
    """CPU count, torch and Python versions and the platform string of this machine."""
    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}

