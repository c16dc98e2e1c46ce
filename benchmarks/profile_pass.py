"""One delta-path pass of the fast attention engine, repeated: the 4-layer bridge of ``bench_bridge_acdc.py`` is run
until the first pass of a receiver hook (``--receiver``, default a layer-1 query input), that pass's scorer and
candidate are kept, and ``Scorer.logits`` is timed on 1, 2, 4 and 8 stacked copies of the candidate (CPU time per
call, ``--calls`` calls each, after 3 untimed). The same baseline and node every time, so two builds compare on
identical work (run it with ``PYTHONPATH`` at each build's tree).

    PYTHONPATH=. python benchmarks/profile_pass.py [--receiver blocks.1.attn.hook_q_input] [--calls 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import circuits
from circuits.acdc.attention import engine

sys.path.insert(0, str(Path(__file__).parent))
from bench_bridge_acdc import batches, bridge  # noqa: E402


class _Found(Exception):
    pass


def first_pass(receiver: str) -> tuple:
    """``(scorer, receiver node, candidate state)`` of the run's first pass on ``receiver``."""
    score = engine.DeltaStack.score

    def wrapped(self, r, extra):
        if self.receiver == receiver:
            raise _Found(self.scorer, r, extra[:1].clone())
        return score(self, r, extra)

    engine.DeltaStack.score = wrapped
    clean, corrupted = batches()
    try:
        circuits.acdc(bridge(4), clean, corrupted, threshold=0.0002, engine="fast")
    except _Found as found:
        return found.args
    finally:
        engine.DeltaStack.score = score
    raise SystemExit(f"profile_pass: no pass on {receiver!r} (a receiver hook of the 4-layer bridge's graph?)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--receiver", default="blocks.1.attn.hook_q_input")
    ap.add_argument("--calls", type=int, default=30)
    args = ap.parse_args()
    if args.calls < 1:
        ap.error(f"--calls must be at least 1, got {args.calls}")
    torch.set_num_threads(1)
    scorer, r, extra = first_pass(args.receiver)
    print(f"{args.receiver}, node {r}: CPU ms per pass")
    for n in (1, 2, 4, 8):
        states = extra.expand(n, *extra.shape[1:]).clone()
        for _ in range(3):
            scorer.logits(args.receiver, r, states)
        c0 = time.process_time()
        for _ in range(args.calls):
            scorer.logits(args.receiver, r, states)
        print(f"{n} states: {1e3 * (time.process_time() - c0) / args.calls:.1f} ms")


if __name__ == "__main__":
    main()
