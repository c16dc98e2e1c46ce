"""relocate(): the exact vectorised delta vs a naive full-recompute version (kept here, not in the library).

Both run on identical copies of a 784-100-100-10 model whose weights come from a short BIMT-style
training, in float64; the chosen swaps must be identical. Prints a table.
    PYTHONPATH=. python benchmarks/bench_relocate.py
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from hooked_bimt import HookedMLP, connection_cost  # noqa: E402
from hooked_bimt.cost import distance_factors  # noqa: E402
from hooked_bimt.swaps import importance, relocate  # noqa: E402


def relocate_naive(model, top_k=30, distance_factor=2.0, y_star=0.5, optimizer=None, swap_outputs=True):
    """The same greedy choices as ``relocate``, each candidate scored by a full ``connection_cost``.

    Returns the list of swaps made, (layer, position, position)."""
    factors = distance_factors(model, distance_factor)
    swaps = []
    with torch.no_grad():
        for block in range(len(model.blocks)):
            if factors[block] == 0 and factors[block + 1] == 0:
                continue
            n = model.widths[block + 1]
            order = torch.argsort(importance(model, block + 1), descending=True, stable=True)[:top_k].tolist()
            where = list(range(n))
            at = list(range(n))
            for neuron in order:
                x = where[neuron]
                costs = []
                for y in range(n):
                    if y == x:
                        costs.append(float(connection_cost(model, factors, y_star)))
                        continue
                    model.swap_neurons(block, x, y)
                    costs.append(float(connection_cost(model, factors, y_star)))
                    model.swap_neurons(block, x, y)
                y = min(range(n), key=lambda i: costs[i])
                if costs[y] < costs[x]:
                    model.swap_neurons(block, x, y, optimizer=optimizer)
                    other = at[y]
                    at[x], at[y] = other, neuron
                    where[neuron], where[other] = y, x
                    swaps.append((block + 1, x, y))
        if swap_outputs and factors[-1] != 0:
            layer = model.n_layers
            order = torch.argsort(importance(model, layer), descending=True, stable=True)[:top_k].tolist()
            for c in order:
                costs = []
                for d in range(model.widths[-1]):
                    model.swap_positions(layer, c, d)
                    costs.append(float(connection_cost(model, factors, y_star)))
                    model.swap_positions(layer, c, d)
                d = min(range(len(costs)), key=lambda i: costs[i])
                if costs[d] < costs[c]:
                    model.swap_positions(layer, c, d)
                    swaps.append((layer, c, d))
    return swaps


def recorded_relocate(model, **kwargs):
    """``relocate`` with its swaps recorded in the same form as ``relocate_naive``'s."""
    swaps = []
    cls = type(model)
    orig_n, orig_p = cls.swap_neurons, cls.swap_positions

    def rec_n(self, block, j, k, optimizer=None):
        swaps.append((block + 1, j, k))
        return orig_n(self, block, j, k, optimizer)

    def rec_p(self, layer, j, k):
        swaps.append((layer, j, k))
        return orig_p(self, layer, j, k)

    cls.swap_neurons, cls.swap_positions = rec_n, rec_p
    try:
        n = relocate(model, **kwargs)
    finally:
        cls.swap_neurons, cls.swap_positions = orig_n, orig_p
    assert n == len(swaps)
    return swaps


def trained_like_model(seed: int) -> HookedMLP:
    """Random init made sparse and heavy-tailed, as after L1 training (no data needed)."""
    torch.manual_seed(seed)
    model = HookedMLP((784, 100, 100, 10)).double()
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_((torch.rand_like(lin.weight) < 0.2) * torch.randn_like(lin.weight).abs() * 5)
    return model


def main() -> None:
    torch.set_num_threads(1)
    print(machine())
    print(f"{'case':<28}{'swaps':>7}{'vectorised ms':>15}{'naive ms':>12}{'speed-up':>10}  same swaps")
    for seed, factors, label in [(0, [2.0, 2.0, 0.0], "MNIST defaults (A_last=0)"), (1, [2.0, 2.0, 2.0], "A=2 all (outputs swap)")]:
        base = trained_like_model(seed)
        a, b = copy.deepcopy(base), copy.deepcopy(base)
        t0 = time.perf_counter()
        fast = recorded_relocate(a, top_k=30, distance_factor=factors)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        slow = relocate_naive(b, top_k=30, distance_factor=factors)
        t_slow = time.perf_counter() - t0
        same = fast == slow
        assert same, f"different swaps: {fast[:5]} vs {slow[:5]}"
        for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
            assert torch.equal(pa, pb)
        print(f"{label:<28}{len(fast):>7}{1e3 * t_fast:>15.2f}{1e3 * t_slow:>12.1f}{t_slow / t_fast:>9.0f}x  {same}")


if __name__ == "__main__":
    main()
