"""How much of the fast MLP engine's speculative path's time its guesses cost (issue 10 item 2): that path as it is
against the same path told every decision in advance (an oracle replacing ``fast_guess.Polynomial``: guesses taken
from a first run, no model fit, no failed predictions, one verification pass per receiver). Same circuit both ways;
CPU time of this process, one thread, alternating. (The default path for this KL in float64 on the CPU is the
compiled sequential loop, ``fast_compiled``, which guesses nothing; it is switched off here.)

    PYTHONPATH=. python benchmarks/fast_mlp_floor.py CACHE [--threshold 1e-6] [--repeats 3]

CACHE: the model ``bench_acdc.py --cache`` wrote (784-100-100-10, vanilla, 300 steps); 100 pairs 8 vs 3, KL.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from safetensors.torch import load_file

from _machine import machine
from bench_acdc import pairs
from circuits import acdc
from circuits.acdc import fast
from hooked_bimt.model import HookedMLP


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache")
    ap.add_argument("--threshold", type=float, default=1e-6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(machine())
    model = HookedMLP((784, 100, 100, 10))
    model.load_state_dict(load_file(args.cache))
    clean, corrupted = pairs(100, 0)
    fast._EXACT_LOOP = False  # the speculative path

    decided: dict[tuple[int, int], torch.Tensor] = {}
    engine_receiver = fast._receiver

    def recording(st, ties, k, j, cand, diff, current):
        out = engine_receiver(st, ties, k, j, cand, diff, current)
        decided[(k, j)] = out[1].clone()
        return out

    fast._receiver = recording
    first = acdc(model, clean, corrupted, threshold=args.threshold, engine="fast")
    fast._receiver = engine_receiver

    class Oracle:  # fast_guess.Polynomial's interface, answering with the decisions of the first run
        def __init__(self, st, k, j, z0, d, deg) -> None:
            self.key = (k, j)

        def loop(self, threshold, start, end, z):
            return decided[self.key][start:end]

    defaults = (fast.Polynomial, fast._BLOCK, fast._MIN_MODEL)
    oracle = (Oracle, 1 << 30, 0)
    cpu: dict[str, list[float]] = {"engine": [], "oracle guesses": []}
    passes: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, (poly, block, min_model) in (("engine", defaults), ("oracle guesses", oracle)):
            fast.Polynomial, fast._BLOCK, fast._MIN_MODEL = poly, block, min_model
            t0 = time.process_time()
            circuit = acdc(model, clean, corrupted, threshold=args.threshold, engine="fast")
            cpu[name].append(time.process_time() - t0)
            assert circuit.edges == first.edges
            passes[name] = circuit.settings["verify_passes"]
    fast.Polynomial, fast._BLOCK, fast._MIN_MODEL = defaults
    for name, times in cpu.items():
        print(f"{name:15s} CPU median {statistics.median(times):.3f}s (all {', '.join(f'{t:.2f}' for t in times)}), "
              f"{passes[name]} verification passes, {len(first.edges)} edges (same circuit)")
    share = 1 - statistics.median(cpu["oracle guesses"]) / statistics.median(cpu["engine"])
    print(f"guesses and failed predictions: {100 * share:.0f}% of the engine's time")


if __name__ == "__main__":
    main()
