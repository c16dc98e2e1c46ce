"""BIMT on transformers (SPEC 8): training step time per regime relative to vanilla, swaps per swap step, and peak
training memory of bimt vs l1_local (claim 4 of the paper, now on a transformer), in one process.

Each regime gets its own ``hooked_bimt.transformer.Trainer`` (``TrainConfig()`` defaults: GPT-2, d_model 64, 4 heads,
d_mlp 128, 2 layers, batch 64, relocate every 100 steps) on the task; rounds of 100 steps rotate through the regimes
so that machine load hits them all alike. A step's time includes its share of ``relocate`` (one swap step per 100).
Peak memory: ``hooked_bimt.memory.PeakMemory`` (CPU: every storage an aten op creates, freed via weakref; the
parameters, gradients and AdamW state alive at the start counted too) over steps 299-301 (swap step 300 inside).

    PYTHONPATH=. python benchmarks/bench_transformer_train.py [--rounds 4] [--task modular_addition|induction]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from hooked_bimt.memory import CPU_METHOD  # noqa: E402
from hooked_bimt.transformer import ModularAdditionTask, TrainConfig, Trainer  # noqa: E402

REGIMES = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")
STEPS_PER_ROUND = 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--task", default="modular_addition")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(machine())
    task = ModularAdditionTask(p=23) if args.task == "modular_addition" else args.task
    config = TrainConfig()
    trainers = {r: Trainer(r, task, config, seed=0) for r in REGIMES}
    times: dict[str, list[float]] = {r: [] for r in REGIMES}
    for _ in range(args.rounds + 1):  # the first round warms up and is dropped
        for r, trainer in trainers.items():
            t0 = time.perf_counter()
            for _ in range(STEPS_PER_ROUND):
                trainer.step()
            times[r].append((time.perf_counter() - t0) / STEPS_PER_ROUND)
    base = statistics.median(times["vanilla"][1:])
    print(f"task {trainers['bimt'].task.name}; {args.rounds} rounds x {STEPS_PER_ROUND} steps per regime after a warm-up "
          "round; median over rounds")
    print(f"{'regime':<10}{'ms/step':>9}{'x vanilla':>11}{'swaps per swap step (each relocate)':>40}")
    for r, trainer in trainers.items():
        ms = statistics.median(times[r][1:])
        counts = [n for _, n in trainer.history["swaps"]]
        print(f"{r:<10}{1e3 * ms:>9.2f}{ms / base:>11.2f}{str(counts) if counts else '-':>40}")
    print(f"peak memory ({CPU_METHOD})")
    peaks = {}
    for r in ("l1_local", "bimt"):
        t = Trainer(r, task, config, seed=0)
        for _ in range(config.swap_every * 3 - 1):
            t.step()
        peaks[r] = t.measured_steps(3)
        print(f"  {r:<9} {peaks[r] / 2**20:.3f} MiB (swaps in the window: {t.history['swaps'][-1:] if t.history['swaps'] else '-'})")
    print(f"  bimt / l1_local = {peaks['bimt'] / peaks['l1_local']:.3f}")


if __name__ == "__main__":
    main()
