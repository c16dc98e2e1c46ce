"""How the ACDC threshold shapes the circuits of a study's models: edges, recovery, logit gap, time.

    PYTHONPATH=. python benchmarks/bench_threshold.py --run runs/demo [--seed 0] [--pairs 64]
        [--thresholds 1e-4,3e-5,1e-5,3e-6] [--regimes vanilla,l1,bimt]

Reads trained models from a ``hooked-bimt reproduce`` output directory (``DIR/models/{regime}/seed{S}``),
builds one batch of correctly classified pairs per task (batch 0 of the study's seeding) and runs the
fast ACDC engine (KL, resample, float64) at each threshold. This is how the study's threshold was chosen.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import circuits
from _machine import machine  # benchmarks/ is on sys.path when run as a script
from hooked_bimt import load_mnist
from hooked_bimt.study.tasks import get_task
from hooked_bimt import TrainResult


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="a reproduce output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--thresholds", default="1e-4,3e-5,1e-5,3e-6")
    ap.add_argument("--regimes", default="vanilla,l1,bimt")
    ap.add_argument("--tasks", default="8v3,circle")
    args = ap.parse_args()
    torch.set_num_threads(1)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    _, test = load_mnist()
    print(machine())
    print("| regime | task | threshold | edges | logit-diff recovery | logit gap | circuit accuracy | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for regime in args.regimes.split(","):
        model = TrainResult.load(args.run / "models" / regime / f"seed{args.seed}").model.double().eval()
        for name in args.tasks.split(","):
            task = get_task(name)
            batch = task.pairs(test, model, args.pairs, args.seed, 0)
            for thr in thresholds:
                t0 = time.perf_counter()
                c = circuits.acdc(model, batch.clean, batch.corrupted, threshold=thr)
                seconds = time.perf_counter() - t0
                ev = circuits.evaluate(model, c, batch.clean, batch.corrupted, logit_diff=task.logit_diff,
                                       clean_labels=batch.clean_labels)
                print(f"| {regime} | {task.name} | {thr:.0e} | {c.n_edges} | {ev['logit_diff_recovery']:.3f} | "
                      f"{ev['logit_gap']:.4f} | {ev['accuracy']:.2f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
