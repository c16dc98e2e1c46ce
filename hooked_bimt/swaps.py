"""BIMT neuron relocation: greedy, function-preserving swaps that lower the connection cost.

For a hidden layer with incoming weight W_in (n x n_prev, distances D_in) and outgoing weight
W_out (n_next x n, distances D_out), the position-dependent part of the connection cost of
neuron a placed at position p is::

    M[a, p] = A_in / numel(W_in)  * sum_i |W_in[a, i]|  * D_in[p, i]
            + A_out / numel(W_out) * sum_r |W_out[r, a]| * D_out[r, p]
    i.e. M = c_in |W_in| D_in^T + c_out |W_out|^T D_out

(the y* terms and the biases do not depend on position). Swapping the neurons at positions a and b
changes the cost by exactly ``M[a, b] + M[b, a] - M[a, a] - M[b, b]``; after the swap rows a and b
of M trade places. One matrix per layer thus scores every candidate swap of a neuron at once,
instead of one full cost evaluation per candidate.

Output neurons keep their index (class) and swap *positions* on their ring (``swap_positions``),
scored by the incoming term only; input pixels never move.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from hooked_bimt.cost import distance_factors
from hooked_bimt.geometry import l1_distance

if TYPE_CHECKING:
    from torch.optim import Optimizer

    from hooked_bimt.model import HookedMLP

_CHUNK = 32  # positions per block when building M: keeps relocate's scratch memory small


def _weighted_distances(
    abs_w: Float[Tensor, "a s"], receivers: Float[Tensor, "p 2"], senders: Float[Tensor, "s 2"], by_receiver: bool
) -> Float[Tensor, "a p"]:
    """``abs_w @ D^T`` (``by_receiver``: D[p, i] = |receiver p - sender i|) or ``abs_w @ D`` with D[r, p].

    Built ``_CHUNK`` positions at a time so the (positions x senders) distance matrix never exists whole.
    """
    n_pos = receivers.shape[0] if by_receiver else senders.shape[0]
    out = abs_w.new_empty(abs_w.shape[0], n_pos)
    for p0 in range(0, n_pos, _CHUNK):
        p1 = min(p0 + _CHUNK, n_pos)
        if by_receiver:
            out[:, p0:p1] = abs_w @ l1_distance(receivers[p0:p1], senders).T
        else:
            out[:, p0:p1] = abs_w @ l1_distance(receivers, senders[p0:p1])
    return out


def hidden_position_costs(model: "HookedMLP", block: int, factors: Sequence[float]) -> Float[Tensor, "n n"]:
    """M[a, p] for the hidden layer of ``blocks.{block}`` (see the module docstring)."""
    layer = block + 1
    w_in, w_out = model.linears[block].weight.detach(), model.linears[layer].weight.detach()
    c_in, c_out = factors[block] / w_in.numel(), factors[layer] / w_out.numel()
    here = model.coords(layer)
    m = w_in.new_zeros(w_in.shape[0], w_in.shape[0])
    if c_in != 0:
        m += c_in * _weighted_distances(w_in.abs(), here, model.coords(layer - 1), by_receiver=True)
    if c_out != 0:
        m += c_out * _weighted_distances(w_out.abs().T, model.coords(layer + 1), here, by_receiver=False)
    return m


def output_position_costs(model: "HookedMLP", factor: float) -> Float[Tensor, "n n"]:
    """M[a, p]: incoming cost of output neuron a placed at the current position of output neuron p."""
    w = model.linears[-1].weight.detach()
    here, senders = model.coords(model.n_layers), model.coords(model.n_layers - 1)
    return (factor / w.numel()) * _weighted_distances(w.abs(), here, senders, by_receiver=True)


def importance(model: "HookedMLP", layer: int) -> Float[Tensor, " n"]:
    """Sum of |incoming| + |outgoing| weights of each neuron of ``layer`` (output: incoming only)."""
    w_in = model.linears[layer - 1].weight.detach()
    score = w_in.abs().sum(1)
    if layer < model.n_layers:
        score = score + model.linears[layer].weight.detach().abs().sum(0)
    return score


def swap_deltas(m: Float[Tensor, "n n"], x: int) -> Float[Tensor, " n"]:
    """delta[y] = M[x, y] + M[y, x] - M[x, x] - M[y, y]: the cost change of swapping positions x and y
    (exactly 0 for y = x)."""
    delta = m[x] + m[:, x] - m[x, x] - m.diagonal()
    delta[x] = 0.0
    return delta


def best_swap(m: Float[Tensor, "n n"], x: int) -> tuple[int, float]:
    """Position y minimising the cost change of swapping x and y, and that change (0 for y = x)."""
    delta = swap_deltas(m, x)
    y = int(torch.argmin(delta))
    return y, float(delta[y])


def _min_gain(m: Tensor) -> float:
    """A swap must lower the cost by more than rounding noise: symmetric layouts (a 2x2 grid, a ring)
    have exact ties that M's arithmetic turns into deltas of about -1e-17."""
    return 64 * torch.finfo(m.dtype).eps * float(m.abs().max()) if m.numel() else 0.0


def greedy_order(m: Float[Tensor, "n n"], score: Float[Tensor, " n"], top_k: int) -> list[tuple[int, int]]:
    """The greedy swaps for one layer: each top-``top_k`` neuron (by ``score``) in turn moves to its best
    position if that strictly lowers the cost. Returns the swaps as (position, position) pairs and
    updates ``m`` in place. Neurons are followed as they move, so a neuron displaced by an earlier swap
    is still the one considered."""
    n = m.shape[0]
    order = torch.argsort(score, descending=True, stable=True)[: min(top_k, n)].tolist()
    where = list(range(n))  # where[neuron] = its current position
    at = list(range(n))  # at[position] = the neuron there
    swaps, gain = [], _min_gain(m)
    for neuron in order:
        x = where[neuron]
        y, delta = best_swap(m, x)
        if delta < -gain:
            m[[x, y]] = m[[y, x]]
            other = at[y]
            at[x], at[y] = other, neuron
            where[neuron], where[other] = y, x
            swaps.append((x, y))
    return swaps


def _output_order(m: Float[Tensor, "n n"], score: Float[Tensor, " n"], top_k: int) -> list[tuple[int, int]]:
    """Greedy position swaps of output neurons (they keep their index; columns of M follow positions)."""
    order = torch.argsort(score, descending=True, stable=True)[: min(top_k, m.shape[0])].tolist()
    swaps, gain = [], _min_gain(m)
    for c in order:
        d, delta = best_swap(m, c)  # the delta formula is symmetric in rows and columns
        if delta < -gain:
            m[:, [c, d]] = m[:, [d, c]]
            swaps.append((c, d))
    return swaps


def _check_args(model: "HookedMLP", top_k: int, y_star: float) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if isinstance(y_star, bool) or not isinstance(y_star, numbers.Real):
        raise TypeError(f"y_star must be a number, got {type(y_star).__name__}")
    if not hasattr(model, "linears") or not hasattr(model, "swap_neurons"):
        raise TypeError(f"relocate needs a HookedMLP, got {type(model).__name__}")


def relocate(
    model: "HookedMLP",
    top_k: int = 30,
    distance_factor: float | Sequence[float] = 2.0,
    y_star: float = 0.5,
    optimizer: "Optimizer | None" = None,
    swap_outputs: bool = True,
) -> int:
    """Move each of the ``top_k`` most important neurons of every hidden layer (highest importance
    first) to the position, itself included, that minimises the connection cost; greedily, one neuron
    at a time, swapping only for a strictly lower cost (by more than floating-point rounding, so exact
    ties in symmetric layouts never swap). The function computed is unchanged.

    Args:
        model: a ``HookedMLP``.
        top_k: neurons considered per layer (importance = sum of |incoming| + |outgoing| weights).
        distance_factor: A, a number or one per linear layer (as in ``connection_cost``).
        y_star: layer spacing; it shifts every candidate's cost equally, so it does not change a choice.
        optimizer: its per-parameter state (AdamW moments) is permuted with the weights.
        swap_outputs: also relocate output neurons on their ring when the last layer's A is not 0.

    Returns:
        The number of swaps made.
    """
    _check_args(model, top_k, y_star)
    factors = distance_factors(model, distance_factor)
    n_swaps = 0
    with torch.no_grad():
        for block in range(len(model.blocks)):
            if factors[block] == 0 and factors[block + 1] == 0:
                continue
            m = hidden_position_costs(model, block, factors)
            for x, y in greedy_order(m, importance(model, block + 1), top_k):
                model.swap_neurons(block, x, y, optimizer=optimizer)
                n_swaps += 1
        if swap_outputs and factors[-1] != 0:
            m = output_position_costs(model, factors[-1])
            for c, d in _output_order(m, importance(model, model.n_layers), top_k):
                model.swap_positions(model.n_layers, c, d)
                n_swaps += 1
    return n_swaps
