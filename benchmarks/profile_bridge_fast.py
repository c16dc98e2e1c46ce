"""cProfile of the fast engine on the bridge of ``bench_bridge_acdc.py`` (4 layers by default, threshold 0.0002):
prints the profiled run's CPU time and the functions with the most internal time (after one warm-up run).

    PYTHONPATH=. python benchmarks/profile_bridge_fast.py [--layers 4] [--top 15]
    PYTHONPATH=. python benchmarks/profile_bridge_fast.py --passes [--layers 4]

``--passes``: instead of cProfile, per receiver hook: passes, scored states, CPU seconds, and a least-squares split
of each pass's cost into a fixed part and a part per stacked state. Each delta-path pass is timed by wrapping
``DeltaStack.score`` for this process only (a measurement, not a configuration: the circuit is unchanged).
``states - tested edges`` is speculation's waste (states scored past a wrong guess); ``guessed/missed`` and
``re-read/missed`` count the guesses checked per hook (prior guesses, and guesses re-read from a state an earlier
pass scored) and how many were wrong.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

import circuits
from circuits.acdc.attention import engine, speculate

sys.path.insert(0, str(Path(__file__).parent))
from bench_bridge_acdc import batches, bridge  # noqa: E402


def timed_passes() -> list[tuple[str, int, float]]:
    """Wrap ``DeltaStack.score``: every pass appends (receiver hook, states, CPU seconds) to the returned list."""
    record: list[tuple[str, int, float]] = []
    score = engine.DeltaStack.score

    def wrapped(self, r, extra):
        c0 = time.process_time()
        out = score(self, r, extra)
        record.append((self.receiver, int(extra.shape[0]), time.process_time() - c0))
        return out

    engine.DeltaStack.score = wrapped
    return record


def counted_guesses() -> dict[str, list[int]]:
    """Wrap ``speculate.Guesser.observe``: per receiver hook, [prior guesses, their misses, guesses re-read from an
    earlier pass, their misses] (a measurement, not a configuration: the circuit is unchanged)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    observe, start = speculate.Guesser.observe, speculate.Guesser.start

    def started(self, receiver):
        self.profiled_hook = receiver
        return start(self, receiver)

    def observed(self, q, missed, rescored):
        row = counts[self.profiled_hook]
        row[2 * rescored] += 1
        row[2 * rescored + 1] += bool(missed)
        return observe(self, q, missed, rescored)

    speculate.Guesser.start, speculate.Guesser.observe = started, observed
    return counts


def fit(rows: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares ``seconds = fixed + per_state * states``."""
    A = torch.tensor([[1.0, n] for n, _ in rows], dtype=torch.float64)
    y = torch.tensor([[t] for _, t in rows], dtype=torch.float64)
    sol = torch.linalg.lstsq(A, y).solution.flatten()
    return float(sol[0]), float(sol[1])


def print_passes(record: list[tuple[str, int, float]], c, total: float, layers: int,
                 guesses: dict[str, list[int]]) -> None:
    print(f"{layers} layers, path {c.settings.get('path')}: {total:.2f} s CPU, {c.n_edges} edges kept, "
          f"{len(record)} passes, {sum(n for _, n, _ in record)} states for {c.settings.get('n_tested')} tested edges, "
          f"{sum(t for *_, t in record):.2f} s in scoring")
    groups: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for hook, n, t in record:
        groups[hook].append((n, t))
    print(f"{'receiver hook':32s} {'passes':>6s} {'states':>6s} {'CPU s':>7s} {'fixed ms':>9s} {'ms/state':>9s} "
          f"{'guessed/missed':>14s} {'re-read/missed':>14s}")
    for hook in sorted(groups, key=lambda h: (h.split(".")[1] if h.startswith("blocks.") else "z", h)):
        rows = groups[hook]
        fixed, per = fit(rows) if len({n for n, _ in rows}) > 1 else (float("nan"), float("nan"))
        g = guesses.get(hook, [0, 0, 0, 0])
        print(f"{hook:32s} {len(rows):6d} {sum(n for n, _ in rows):6d} {sum(t for _, t in rows):7.2f} "
              f"{1e3 * fixed:9.1f} {1e3 * per:9.2f} {f'{g[0]}/{g[1]}':>14s} {f'{g[2]}/{g[3]}':>14s}")
    g = [sum(row[i] for row in guesses.values()) for i in range(4)]
    print(f"guesses checked: {g[0]} prior ({g[1]} missed), {g[2]} re-read from an earlier pass ({g[3]} missed)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threshold", type=float, default=0.0002)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--passes", action="store_true", help="per-hook pass costs instead of cProfile")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clean, corrupted = batches()
    model = bridge(args.layers)
    record = timed_passes() if args.passes else []
    guesses = counted_guesses() if args.passes else {}
    circuits.acdc(model, clean, corrupted, threshold=args.threshold, engine="fast")
    if args.passes:
        record.clear()
        guesses.clear()
        c0 = time.process_time()
        c = circuits.acdc(model, clean, corrupted, threshold=args.threshold, engine="fast")
        print_passes(record, c, time.process_time() - c0, args.layers, guesses)
        return
    profile, c0 = cProfile.Profile(), time.process_time()
    profile.enable()
    c = circuits.acdc(model, clean, corrupted, threshold=args.threshold, engine="fast")
    profile.disable()
    print(f"profiled fast run: {time.process_time() - c0:.2f} s CPU, {c.n_edges} edges kept, "
          f"{c.settings.get('passes')} passes")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
