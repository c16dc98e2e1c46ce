"""Same-process A/B of fast-engine switches on the dense bench circuit (CPU time of this process, one thread).

    PYTHONPATH=. python benchmarks/ab_fast_flags.py CACHE THRESHOLD REPEATS NAME=VALUE[,NAME=VALUE] ...

Each argument after REPEATS is one configuration of ``circuits.acdc.fast`` module switches (``-`` for the
defaults); configurations alternate within each repeat so machine load hits them alike. CACHE is the model
``bench_acdc.py --cache`` wrote (784-100-100-10, vanilla, 300 steps); 100 pairs 8 vs 3, KL, float64 discovery.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from safetensors.torch import load_file

from _machine import machine
from bench_acdc import pairs
from circuits import acdc
from circuits.acdc import fast
from hooked_bimt.model import HookedMLP


def main() -> None:
    cache, thr, repeats, configs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    torch.set_num_threads(1)
    print(machine())
    model = HookedMLP((784, 100, 100, 10))
    model.load_state_dict(load_file(cache))
    clean, corrupted = pairs(100, 0)
    defaults = {name: getattr(fast, name) for c in configs if c != "-" for name, _ in (kv.split("=") for kv in c.split(","))}
    cpu: dict[str, list[float]] = {c: [] for c in configs}
    info: dict[str, tuple] = {}
    for _ in range(repeats):
        for c in configs:
            for name, value in defaults.items():
                setattr(fast, name, value)
            for kv in ([] if c == "-" else c.split(",")):
                name, value = kv.split("=")
                setattr(fast, name, type(defaults[name])(eval(value)))
            t0 = time.process_time()
            circuit = acdc(model, clean, corrupted, threshold=thr, engine="fast")
            cpu[c].append(time.process_time() - t0)
            info[c] = (circuit.edges, circuit.settings["verify_passes"], circuit.settings["downstream_flops"])
    base = info[configs[0]][0]
    for c in configs:
        edges, passes, flops = info[c]
        print(f"{c:40s} CPU median {statistics.median(cpu[c]):.3f}s (all {', '.join(f'{t:.2f}' for t in cpu[c])}), "
              f"{passes} passes, {flops:,} FLOP, {len(edges)} edges, same circuit as first: {edges == base}")


if __name__ == "__main__":
    main()
