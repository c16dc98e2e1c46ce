"""Where our time goes in ``compare.py``'s runs: cProfile of one of our methods on the same model and batch
(after one untimed run), the functions with the most internal time, then the most cumulative time, then our
own (``circuits/``) functions by cumulative time.

    PYTHONPATH=. python benchmarks/peers/profile_ours.py {acdc,eap,eap_ig} [compare.py's options] [--top 15]
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import hf_and_batch, our_eap, parse, wrap  # noqa: E402

import circuits  # noqa: E402


def main() -> None:
    method, rest = sys.argv[1], sys.argv[2:]
    top = 15
    if "--top" in rest:
        i = rest.index("--top")
        top, rest = int(rest[i + 1]), rest[:i] + rest[i + 2:]
    if method not in ("acdc", "eap", "eap_ig"):
        raise SystemExit(f"method must be acdc, eap or eap_ig, got {method!r}")
    args = parse(rest, check_peer=False)
    torch.set_num_threads(1)
    (name, hf, cfg), batch = hf_and_batch(args)
    model = wrap(name, hf, cfg)
    if method == "acdc":
        def run():
            return circuits.acdc(model, batch["clean"], batch["corrupt"], threshold=args.threshold, engine="fast")
    else:
        run = our_eap(model, batch, None if method == "eap" else args.steps[0])
    run()
    profile, t0 = cProfile.Profile(), time.perf_counter()
    profile.enable()
    run()
    profile.disable()
    print(f"profiled {method} ({' '.join(rest)}): {time.perf_counter() - t0:.2f} s wall under cProfile")
    for key in ("tottime", "cumulative"):
        pstats.Stats(profile).sort_stats(key).print_stats(top)
    pstats.Stats(profile).sort_stats("cumulative").print_stats("circuits/", top)  # our own functions


if __name__ == "__main__":
    main()
