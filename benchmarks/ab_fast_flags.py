"""Same-process A/B of fast-engine options on the dense bench circuit (CPU time of this process, one thread).

    PYTHONPATH=. python benchmarks/ab_fast_flags.py CACHE THRESHOLD REPEATS CONFIG [CONFIG ...]

Each CONFIG is ``-`` (the defaults) or ``field=value[,field=value]`` over ``circuits.acdc.MLPOptions``' fields
(e.g. ``compiled=false``, ``block=384,grow=1.5``), parsed by each field's type (no code is evaluated);
configurations alternate within each repeat so machine load hits them alike. CACHE is the model
``bench_acdc.py --cache`` wrote (784-100-100-10, vanilla, 300 steps); 100 pairs 8 vs 3, KL, float64 discovery.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
from safetensors.torch import load_file

from _machine import machine
from bench_acdc import pairs
from circuits import acdc
from circuits.acdc.options import MLPOptions, Options
from hooked_bimt.model import HookedMLP

_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def parse_config(text: str) -> Options:
    """``-`` or ``field=value,...`` over ``MLPOptions``' fields, each value converted by the field's default's type."""
    if text == "-":
        return Options()
    defaults = MLPOptions()
    known = {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(MLPOptions)}
    values = {}
    for item in text.split(","):
        name, _, raw = item.partition("=")
        if name not in known:
            raise SystemExit(f"unknown MLPOptions field {name!r}; expected one of {sorted(known)}")
        kind = known[name]
        if kind is bool:
            if raw.lower() not in _BOOLS:
                raise SystemExit(f"{name}: expected true or false, got {raw!r}")
            values[name] = _BOOLS[raw.lower()]
        else:
            values[name] = kind(raw)
    return Options(mlp=MLPOptions(**values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache")
    ap.add_argument("threshold", type=float)
    ap.add_argument("repeats", type=int)
    ap.add_argument("configs", nargs="+")
    args = ap.parse_args()
    options = {c: parse_config(c) for c in args.configs}  # refused before any work
    torch.set_num_threads(1)
    print(machine())
    model = HookedMLP((784, 100, 100, 10))
    model.load_state_dict(load_file(args.cache))
    clean, corrupted = pairs(100, 0)
    cpu: dict[str, list[float]] = {c: [] for c in args.configs}
    info: dict[str, tuple] = {}
    for _ in range(args.repeats):
        for c in args.configs:
            t0 = time.process_time()
            circuit = acdc(model, clean, corrupted, threshold=args.threshold, engine="fast", options=options[c])
            cpu[c].append(time.process_time() - t0)
            info[c] = (circuit.edges, circuit.settings["passes"], circuit.settings["path"])
    base = info[args.configs[0]][0]
    for c in args.configs:
        edges, passes, path = info[c]
        print(f"{c:40s} CPU median {statistics.median(cpu[c]):.3f}s (all {', '.join(f'{t:.2f}' for t in cpu[c])}), "
              f"path {path}, {passes} passes, {len(edges)} edges, same circuit as first: {edges == base}")


if __name__ == "__main__":
    main()
