"""Wall-clock timing shared by the MNIST and the transformer training: inference latency per batch."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def inference_ms(model: Any, x: Tensor, repeats: int = 50) -> float:
    """Median wall time of one forward pass of ``model`` over ``x``, in milliseconds (5 untimed passes first)."""
    times = []
    for _ in range(repeats + 5):
        sync(x.device)
        t0 = time.perf_counter()
        model(x)
        sync(x.device)
        times.append(time.perf_counter() - t0)
    return 1e3 * sorted(times[5:])[len(times[5:]) // 2]
