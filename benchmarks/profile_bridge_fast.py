"""cProfile of the fast engine on the bridge of ``bench_bridge_acdc.py`` (4 layers by default, threshold 0.0002):
prints the profiled run's CPU time and the functions with the most internal time (after one warm-up run).

    PYTHONPATH=. python benchmarks/profile_bridge_fast.py [--layers 4] [--top 15]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

import circuits

sys.path.insert(0, str(Path(__file__).parent))
from bench_bridge_acdc import batches, bridge  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threshold", type=float, default=0.0002)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    clean, corrupted = batches()
    model = bridge(args.layers)
    circuits.acdc(model, clean, corrupted, threshold=args.threshold, engine="fast")
    profile, c0 = cProfile.Profile(), time.process_time()
    profile.enable()
    c = circuits.acdc(model, clean, corrupted, threshold=args.threshold, engine="fast")
    profile.disable()
    print(f"profiled fast run: {time.process_time() - c0:.2f} s CPU, {c.n_edges} edges kept, "
          f"{c.settings.get('passes')} passes")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
