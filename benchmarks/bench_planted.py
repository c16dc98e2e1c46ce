"""Planted-circuit benchmark (issue 6): pessimistic AUC and wall time per method per planted family.

    PYTHONPATH=. python benchmarks/bench_planted.py [--seeds 0 1 2] [--n-batch 64] [--ig-steps 10] [--eps 0.01]

Methods: EAP (gradient at the corrupted run for KL), EAP-IG (``--ig-steps`` midpoints), and ACDC's
threshold sweep (``circuits.threshold_sweep``; edges never pruned rank highest). Also reports whether
ACDC at the threshold halfway (geometrically) between the largest distractor effect and the smallest
signal effect returns exactly the planted edges. Methods whose code is missing are reported as such.
Prints a markdown table (means over seeds; time is one call).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from circuits.attribution import eap
from circuits.graph import graph_of
from circuits.planted import removal_effects
from hooked_bimt.zoo.planted import FAMILIES
from circuits.roc import pessimistic_auc


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _methods(p, ig_steps: int, thresholds: list[float]):
    yield "EAP", lambda: eap(p.model, p.clean, p.corrupted, p.metric), {"absolute": True}
    yield f"EAP-IG (k={ig_steps})", lambda: eap(p.model, p.clean, p.corrupted, p.metric, steps=ig_steps), \
        {"absolute": True}

    def sweep():
        import circuits

        return circuits.threshold_sweep(p.model, p.clean, p.corrupted, thresholds)

    yield "ACDC sweep", sweep, {"missing": math.inf}


def _acdc_exact(p) -> str:
    try:
        import circuits

        effects = removal_effects(p.model, p.clean, p.corrupted, p.metric)
        true_min = min(effects[e] for e in p.true_edges)
        other_max = max(abs(v) for e, v in effects.items() if e not in p.true_edges)
        found = circuits.acdc(p.model, p.clean, p.corrupted, threshold=math.sqrt(true_min * other_max))
        return "yes" if found.edges == frozenset(p.true_edges) else f"no ({len(found.edges)} edges)"
    except (ImportError, AttributeError) as err:
        return f"n/a ({type(err).__name__})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-batch", type=int, default=64)
    ap.add_argument("--ig-steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.01, help="distractor weight (larger = harder)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    thresholds = [10.0 ** (k / 2) for k in range(-16, 1)]
    print("| family | edges | true edges | method | AUC (mean, min over seeds) | seconds (mean) | ACDC exact at mid threshold |")
    print("|---|---|---|---|---|---|---|")
    for family, build in FAMILIES.items():
        rows: dict[str, tuple[list, list]] = {}
        exact = []
        for seed in args.seeds:
            p = build(seed=seed, n_batch=args.n_batch, eps=args.eps)
            universe = list(graph_of(p.model).edges())
            for name, fn, opts in _methods(p, args.ig_steps, thresholds):
                try:
                    scores, secs = _timed(fn)
                    auc = pessimistic_auc(scores, p.true_edges, universe, **opts)
                except (ImportError, AttributeError) as err:
                    auc, secs = f"n/a ({type(err).__name__})", math.nan
                rows.setdefault(name, ([], []))[0].append(auc)
                rows[name][1].append(secs)
            exact.append(_acdc_exact(p))
        for name, (aucs, secs) in rows.items():
            if all(isinstance(a, float) for a in aucs):
                auc_s = f"{statistics.mean(aucs):.4f}, {min(aucs):.4f}"
                sec_s = f"{statistics.mean(secs):.3f}"
            else:
                auc_s, sec_s = str(aucs[0]), "-"
            print(f"| {family} | {len(universe)} | {len(p.true_edges)} | {name} | {auc_s} | {sec_s} | "
                  f"{', '.join(sorted(set(exact)))} |")


if __name__ == "__main__":
    main()
