"""Training step time per regime, and the BIMT/vanilla ratio, measured in one run, interleaved.

Each regime gets its own trainer (784-100-100-10, batch 100, MNIST defaults, swaps every 500 steps);
rounds of 100 steps rotate through the regimes so that machine load hits them all alike. A step's
time includes its share of relocate() (one swap step per 500). Prints a table.
    PYTHONPATH=. python benchmarks/bench_train_step.py [rounds]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from hooked_bimt import REGIMES, TrainConfig, load_mnist  # noqa: E402
from hooked_bimt.training import Training  # noqa: E402

STEPS_PER_ROUND = 100


def main(rounds: int = 10) -> None:
    torch.set_num_threads(1)
    print(machine())
    data = load_mnist()
    cfg = TrainConfig(train_subset=10_000, test_subset=1_000)
    trainers = {name: Training(r, cfg, 0, torch.device("cpu"), data) for name, r in REGIMES.items()}
    times: dict[str, list[float]] = {name: [] for name in REGIMES}
    step = 0
    for _ in range(rounds + 1):  # the first round warms up and is dropped
        for name, trainer in trainers.items():
            t0 = time.perf_counter()
            for s in range(step, step + STEPS_PER_ROUND):
                trainer.step(s)
            times[name].append((time.perf_counter() - t0) / STEPS_PER_ROUND)
        step += STEPS_PER_ROUND
    base = statistics.median(times["vanilla"][1:])
    print(f"{rounds} rounds x {STEPS_PER_ROUND} steps per regime (after 1 warm-up round); median over rounds")
    print(f"{'regime':<10}{'ms/step':>10}{'x vanilla':>11}{'swaps':>7}")
    for name, trainer in trainers.items():
        ms = statistics.median(times[name][1:])
        print(f"{name:<10}{1e3 * ms:>10.3f}{ms / base:>11.2f}{trainer.swaps:>7}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
