"""EAP on a TransformerLens bridge against TransformerLens's own edge attribution (issue 11 item 4).

The bridge of ``bench_bridge_acdc.py`` (4 layers, 8 heads, d_model 128, float64), 16 clean/corrupted
12-token sequences; the metric is a logit difference at the last position. TL's
``attribution_patch(..., EdgeAttributionConfig(granularity="edge"))`` runs per example; ``circuits.eap`` with
``point="corrupted"`` scores the same edges in one batched pass and equals minus TL's scores summed over
positions. Both run once untimed (one-time costs), then ``--repeats`` times alternately; prints the median
times (same process, same inputs), their ratio and the largest disagreement.

    PYTHONPATH=. python benchmarks/bench_bridge_eap.py [--layers 4] [--steps 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

import circuits

sys.path.insert(0, str(Path(__file__).parent))
from bench_bridge_acdc import batches, bridge  # noqa: E402

from circuits.models.tl_attribution import from_tl_attribution  # noqa: E402


def task(logits: torch.Tensor) -> torch.Tensor:
    return (logits[..., -1, 3] - logits[..., -1, 5]).mean()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.machine()}, torch {torch.__version__}, 1 thread, float64")
    model, (clean, corrupted) = bridge(args.layers), batches()
    circuits.graph_of(model)
    runs = {
        "tl": lambda: attribution_patch(model, clean, corrupted, task, EdgeAttributionConfig(granularity="edge")),
        "ours": lambda: circuits.eap(model, clean, corrupted, lambda logits, full: task(logits), point="corrupted"),
    }
    out = {name: run() for name, run in runs.items()}  # warm-up: one-time costs of either side
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    t_tl, t_ours = statistics.median(times["tl"]), statistics.median(times["ours"])
    tl, ours = out["tl"], out["ours"]
    ported = from_tl_attribution(tl, model)  # TL's scores in our names, summed over positions, our sign
    err = max(abs(ours[e] - ported[e]) for e in ours)
    scale = max(abs(v) for v in ours.values())
    print(f"{len(ours)} edges; medians of {args.repeats}: TL attribution_patch {t_tl:.2f} s, circuits.eap {t_ours:.3f} s: "
          f"{t_tl / t_ours:.1f}x (ranges {min(times['tl']):.2f}-{max(times['tl']):.2f} s, "
          f"{min(times['ours']):.3f}-{max(times['ours']):.3f} s); "
          f"max |eap + TL summed| = {err:.2e} (largest score {scale:.2e})")
    t0 = time.perf_counter()
    circuits.eap(model, clean, corrupted, "kl", steps=args.steps)
    print(f"EAP-IG ({args.steps} steps, KL at the last position): {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
