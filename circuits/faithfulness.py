"""Faithfulness curves of an edge ranking (MIB, Mueller et al. 2025, circuit localization track; SPEC 5).

Any method's edge scores (EAP, EAP-IG, ACDC's ``threshold_sweep`` rank, or the user's own) are judged on one
axis. Every edge of the graph is ranked by ``|score|`` (``absolute=False``: by the signed score), higher first,
ties broken by the graph's edge order (``Graph.edges()``). At each level ``p`` the top ``int(p * n_edges)``
edges are kept (MIB's rounding: down) and the circuit runs with the given ablation (SPEC 4), giving

    f(p) = (m(C_p) - m(empty)) / (m(full) - m(empty))

with ``m`` the metric (``metric(logits, full_logits)``; any affine change of ``m``, such as the sign of a
logit difference, leaves ``f`` unchanged). ``m(full)`` is the clean run, ``m(empty)`` every edge ablated (for
resample: the corrupted run). Over consecutive levels (trapezoids on the linear ``p`` axis, as MIB):

    CPR = sum_i (p_{i+1} - p_i) * (f_i + f_{i+1}) / 2              (area under f; higher is better)
    CMD = sum_i (p_{i+1} - p_i) * (|1 - f_i| + |1 - f_{i+1}|) / 2  (area between f and 1; lower is better)

``prune=True`` (MIB's ``apply_topn(..., prune=True)``) then drops every kept edge that no longer lies on a
path from an input node (a sender that is no node's output) to the output hook through kept edges;
``n_edges`` reports what is kept after pruning. Where MIB is silent for our graphs: every node of an
input hook (each pixel) is an input node, and a node with several input hooks (a head's q, k and v inputs) is
reached when any of them is. ``m(full) == m(empty)`` leaves ``f`` undefined: NaN, and so are the areas.

Cost: one corrupted run for ``a'``, one clean run, one run per distinct kept edge set (levels that keep the
same edges, e.g. several ``int(p * n) == 0`` on a small graph, share one run; the full set is the clean run
and the empty set is measured once). The ranking and the per-level masks are vectorised.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from circuits import metrics
from circuits.graph import Edge, Graph, runnable_graph
from circuits.hook_settings import keeps_hook_settings
from circuits.patching import (EdgeMask, check_ablation, check_batches, corrupted_activations, model_device_dtype,
                               patch_term)
from circuits.validate import check_model_and_inputs, scalar_metric

MIB_LEVELS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
ROWS_PER_PASS = 1024  # examples per batched forward pass (``run_masks``): levels x batch rows at once
Ranks = dict[tuple[str, str], Tensor]  # connection -> (n_recv, n_send) position in the ranking, 0 = best


@dataclass(frozen=True)
class FaithfulnessCurve:
    """One curve: per level the edges kept and ``f``; its areas; the metric at the full and empty circuits."""

    levels: tuple[float, ...]
    n_edges: tuple[int, ...]
    faithfulness: tuple[float, ...]
    metric_values: tuple[float, ...]
    metric_full: float
    metric_empty: float
    n_total_edges: int
    cpr: float
    cmd: float
    pruned: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN stays a float; ``json`` writes it as ``NaN``)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def areas(levels: Sequence[float], f: Sequence[float]) -> tuple[float, float]:
    """``(CPR, CMD)``: trapezoid areas under ``f`` and between ``f`` and 1 over ``levels`` (module docstring)."""
    cpr = cmd = 0.0
    for i in range(len(levels) - 1):
        width = levels[i + 1] - levels[i]
        cpr += width * (f[i] + f[i + 1]) / 2
        cmd += width * (abs(1 - f[i]) + abs(1 - f[i + 1])) / 2
    return cpr, cmd


def check_levels(levels: Any) -> tuple[float, ...]:
    """Levels as floats, strictly increasing, each in [0, 1]; a ``ValueError`` naming the problem otherwise."""
    try:
        out = tuple(float(p) for p in levels)
    except (TypeError, ValueError) as err:
        raise ValueError(f"levels must be a sequence of fractions in [0, 1], got {levels!r}") from err
    if not out:
        raise ValueError("levels is empty: give at least one fraction of edges to keep, e.g. circuits.MIB_LEVELS")
    bad = [p for p in out if not 0.0 <= p <= 1.0]  # NaN fails too
    if bad:
        raise ValueError(f"levels must lie in [0, 1] (fractions of the edges kept), got {bad}")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"levels must be strictly increasing, got {list(out)}")
    return out


def _layout(graph: Graph) -> tuple[dict[tuple[str, str], tuple[int, int, int, int, int]], int]:
    """Where each connection's edges sit in ``graph.edges()`` order (receivers; receiver node; connections into it;
    sender node): ``(sender, receiver) -> (base, width, prefix, n_receiver, n_sender)``, edge (s -> r) at
    ``base + r * width + prefix + s``; and the number of edges."""
    out, base = {}, 0
    for receiver in graph.receivers():
        conns = graph.connections_into(receiver)
        n_r, width, prefix = graph.nodes[receiver].count, sum(graph.nodes[c.sender].count for c in conns), 0
        for c in conns:
            out[(c.sender, receiver)] = (base, width, prefix, n_r, graph.nodes[c.sender].count)
            prefix += graph.nodes[c.sender].count
        base += n_r * width
    return out, base


def edge_ranks(scores: Mapping[Edge, float], graph: Graph, *, absolute: bool = True) -> Ranks:
    """Each edge's position when all are sorted by score (``|score|`` if ``absolute``), higher first, ties by
    ``graph.edges()`` order. Every edge of the graph needs a finite or infinite score; no other key is allowed.

    Vectorised: each scored edge's index in ``graph.edges()`` order by arithmetic (``_layout``), no Edge built."""
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores must be a dict Edge -> float, got {type(scores).__name__}")
    layout, n = _layout(graph)
    try:  # one comprehension over the keys; the checks and the index arithmetic on arrays
        where = np.array([layout[(e[0], e[2])] + (e[1], e[3]) for e in scores], dtype=np.int64).reshape(-1, 7)
    except (KeyError, TypeError, IndexError):
        bad = next(e for e in scores if not (isinstance(e, tuple) and len(e) == 4 and (e[0], e[2]) in layout))
        raise ValueError(f"scores name edges the model's graph does not have (e.g. {bad!r})") from None
    base, width, prefix, n_r, n_s, s_i, r_i = where.T
    outside = (s_i < 0) | (s_i >= n_s) | (r_i < 0) | (r_i >= n_r)
    if outside.any():
        bad = list(scores)[int(np.argmax(outside))]
        raise ValueError(f"scores name edges the model's graph does not have (e.g. {bad!r}: node index out of range)")
    idx = base + r_i * width + prefix + s_i
    vals = np.fromiter(scores.values(), dtype=float, count=len(scores))
    if len(scores) != n:
        missing = next(e for i, e in enumerate(graph.edges()) if i not in set(idx.tolist()))
        raise ValueError(f"scores lack {n - len(scores)} of the graph's {n} edges (e.g. {missing}): score every edge")
    if np.isnan(vals).any():
        first = next(e for e, v in scores.items() if v != v)
        raise ValueError(f"scores contain NaN ({int(np.isnan(vals).sum())} edges, e.g. {first}): rank needs numbers")
    key = np.empty(n)
    key[idx] = np.abs(vals) if absolute else vals
    position = np.empty(n, dtype=np.int64)
    position[np.lexsort((np.arange(n), -key))] = np.arange(n)  # by -key, then graph order
    ranks: Ranks = {}
    for conn, (base, width, prefix, n_r, n_s) in layout.items():
        index = base + np.arange(n_r)[:, None] * width + prefix + np.arange(n_s)[None, :]
        ranks[conn] = torch.from_numpy(position[index])
    return ranks


def prune_mask(graph: Graph, mask: EdgeMask) -> EdgeMask:
    """MIB's pruning: keep only the edges of ``mask`` on a path input -> ... -> output through kept edges.

    Forward: a node is reached when it is an input node or a kept edge from a reached node enters one of its
    input hooks; backward: a node is useful when it is the output or a kept edge leaves it for a useful node.
    An edge stays when its sender is reached and its receiver useful. Both are fixpoints, so no order is assumed.
    """
    outputs = set(graph.output_hooks())
    dev = next(iter(mask.values())).device
    feeds = {r: graph.feeds(r) for r in graph.receivers()}

    def alive(r: str) -> Tensor:  # the receiver node's usefulness: the output's are all useful; a grouped input
        if r == graph.output or feeds[r] is None:  # node's, whether any node of its group is
            return into[r]
        out, group = feeds[r]
        return useful[out].view(-1, group).any(1)

    hooks = set(graph.senders()) | outputs
    reach = {s: torch.full((graph.nodes[s].count,), s not in outputs, device=dev) for s in hooks}
    useful = {s: torch.zeros(graph.nodes[s].count, dtype=torch.bool, device=dev) for s in hooks}
    into = {r: torch.zeros(graph.nodes[r].count, dtype=torch.bool, device=dev) for r in graph.receivers()}
    into[graph.output] = torch.ones_like(into[graph.output])
    changed = True
    while changed:  # forward reachability
        changed = False
        for (s, r), m in mask.items():
            if feeds[r] is not None and r != graph.output:
                out, group = feeds[r]
                new = reach[out] | (m & reach[s][None, :]).any(1).repeat_interleave(group)
                changed |= bool((new != reach[out]).any())
                reach[out] = new
    changed = True
    while changed:  # backward usefulness
        changed = False
        for (s, r), m in mask.items():
            new = useful[s] | (m & alive(r)[:, None]).any(0)
            changed |= bool((new != useful[s]).any())
            useful[s] = new
    out = {}
    for (s, r), m in mask.items():
        out[(s, r)] = m & reach[s][None, :] & alive(r)[:, None]
    return out


def run_masks(model: Any, clean: Float[Tensor, "batch ..."], a_prime: dict[str, Tensor], masks: Sequence[EdgeMask],
              graph: Graph, rows_per_pass: int = ROWS_PER_PASS) -> list[Tensor]:
    """The logits of several circuits, one per edge mask, with ``run_with_mask``'s patching rule: ``clean`` is
    repeated once per mask along the batch and copy i is patched by ``masks[i]``, so one forward pass serves
    up to ``rows_per_pass // batch`` circuits (the hook machinery of a bridge costs more than its arithmetic)."""
    b = clean.shape[0]
    per = max(1, rows_per_pass // b)
    senders, receivers = set(graph.senders()), set(graph.receivers())
    out: list[Tensor] = []
    for start in range(0, len(masks), per):
        group = masks[start : start + per]
        a_rep = {h: torch.cat([a] * len(group)) for h, a in a_prime.items()}
        current: dict[str, Tensor] = {}

        def fn(act: Tensor, name: str, group=group, a_rep=a_rep, current=current) -> Tensor:
            if name in receivers:
                pieces = list(act.split(b))
                for conn in graph.connections_into(name):
                    delta = a_rep[conn.sender] - current[conn.sender]
                    for i, mask in enumerate(group):
                        term = patch_term(conn, graph, delta[i * b : (i + 1) * b], mask[(conn.sender, conn.receiver)])
                        if term is not None:
                            pieces[i] = pieces[i] + term
                act = torch.cat(pieces)
            if name in senders:
                current[name] = act
            return act

        hooks = [(h, lambda act, hook, h=h, fn=fn: fn(act, h)) for h in sorted(senders | receivers)]
        with model.hooks(fwd_hooks=hooks):
            logits = model(torch.cat([clean] * len(group)))
        out += list(logits.split(b))
    return out


def _key(mask: EdgeMask) -> tuple:
    return tuple(bytes(m.cpu().numpy().tobytes()) for m in mask.values())


def level_masks(graph: Graph, ranks: Ranks, levels: Sequence[float], prune: bool
                ) -> tuple[list[EdgeMask], list[int], list[int]]:
    """``(masks, which, kept)``: the distinct edge masks to run (``masks[0]`` the empty circuit), for each level
    the index of its mask (-1: every edge kept, the clean run itself) and the number of edges it keeps."""
    n_total = graph.n_edges
    empty = {k: torch.zeros_like(v, dtype=torch.bool) for k, v in ranks.items()}
    distinct: dict[tuple, int] = {_key(empty): 0}
    masks, which, kept = [empty], [], []
    for p in levels:
        k = int(p * n_total)  # MIB's rounding
        mask = {key: v < k for key, v in ranks.items()}
        if prune:
            mask = prune_mask(graph, mask)
        kept.append(int(sum(int(m.sum()) for m in mask.values())))
        if kept[-1] == n_total:
            which.append(-1)
            continue
        which.append(distinct.setdefault(_key(mask), len(masks)))
        if which[-1] == len(masks):
            masks.append(mask)
    return masks, which, kept


@keeps_hook_settings
@torch.no_grad()
def faithfulness_curve(
    model: Any,
    scores: Mapping[Edge, float],
    clean: Float[Tensor, "batch ..."],
    corrupted: Float[Tensor, "batch ..."],
    metric: Union[str, metrics.Metric, Any] = "kl",
    levels: Sequence[float] = MIB_LEVELS,
    prune: bool = False,
    *,
    ablation: str = "resample",
    absolute: bool = True,
) -> FaithfulnessCurve:
    """The faithfulness curve of ``scores`` with its CPR and CMD (module docstring: ranking, rounding, pruning).

    Args:
        model: a hooked model with a circuit graph (``HookedMLP``, a TransformerBridge, your own).
        scores: ``{edge: score}`` for every edge of the graph (``circuits.eap``, ``threshold_sweep``, ...).
        clean, corrupted: paired batches, as for ``run_circuit``.
        metric: ``"kl"``, a ``circuits.metrics`` metric (``logit_diff(...)`` for the study's tasks) or
            ``metric(logits, full_logits) -> scalar``.
        levels: fractions of edges kept, strictly increasing in [0, 1] (default ``MIB_LEVELS``).
        prune: drop kept edges off every input-output path (MIB) before running.
        ablation: "resample", "zero" or "mean" (SPEC 4), the same for every level and the empty circuit.
        absolute: rank by ``|score|`` (EAP's signed scores); False ranks by the score itself.
    """
    check_model_and_inputs(model, clean, corrupted)
    check_ablation(ablation)
    levels = check_levels(levels)
    fn = scalar_metric(metrics.resolve(metric), "faithfulness_curve")
    graph = runnable_graph(model)
    ranks = edge_ranks(scores, graph, absolute=absolute)  # every input check before the first forward pass
    clean, corrupted = check_batches(model, clean, corrupted)
    device, _ = model_device_dtype(model)
    ranks = {k: v.to(device) for k, v in ranks.items()}
    a_prime = corrupted_activations(model, corrupted, ablation, graph)
    full_logits = model(clean)
    m_full = float(fn(full_logits, full_logits))
    n_total = graph.n_edges
    masks, level_mask, kept = level_masks(graph, ranks, levels, prune)
    measured = [float(fn(x, full_logits)) for x in run_masks(model, clean, a_prime, masks, graph)]
    m_empty = measured[0]
    values = [m_full if i < 0 else measured[i] for i in level_mask]
    denom = m_full - m_empty
    f = [(v - m_empty) / denom if denom != 0 else math.nan for v in values]
    cpr, cmd = areas(levels, f)
    return FaithfulnessCurve(levels=levels, n_edges=tuple(kept), faithfulness=tuple(f), metric_values=tuple(values),
                             metric_full=m_full, metric_empty=m_empty, n_total_edges=n_total, cpr=cpr, cmd=cmd,
                             pruned=bool(prune))
