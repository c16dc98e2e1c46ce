"""One line describing where a benchmark ran."""

import os
import platform

import torch


def machine() -> str:
    return (
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores visible, "
        f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads), python {platform.python_version()}"
    )
