"""Peak training memory per regime and the swap / no-swap ratio (bimt vs l1_local, l1_swap vs l1).

Each regime trains 502 steps (swap step 500 inside the measured window) with the MNIST defaults on a
2,000-image subset; peak memory as ``TrainResult.metrics['peak_memory_bytes']`` (method printed).
    PYTHONPATH=. python benchmarks/bench_memory.py [device]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from hooked_bimt import REGIMES, TrainConfig, load_mnist, train  # noqa: E402


def main(device: str = "cpu") -> None:
    torch.set_num_threads(1)
    print(machine())
    data = load_mnist()
    cfg = TrainConfig(steps=502, eval_every=502, train_subset=2_000, test_subset=1_000)
    peaks, method = {}, ""
    for name in REGIMES:
        result = train(name, cfg, seed=0, device=device, data=data, progress=False)
        peaks[name], method = result.metrics["peak_memory_bytes"], result.metrics["memory_method"]
        swaps = result.metrics["swaps"]
        print(f"{name:<10}{peaks[name] / 1024:>12.1f} KiB   swaps {swaps}")
    print(f"method: {method}")
    for swap, twin in (("bimt", "l1_local"), ("l1_swap", "l1")):
        print(f"{swap} / {twin}: {peaks[swap] / peaks[twin]:.3f}x")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
