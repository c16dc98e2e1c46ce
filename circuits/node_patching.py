"""Node patching (the paper's Figure 1): how much of the clean behaviour one hidden neuron restores.

For each node ``n`` of each hidden sender hook (the output of a node, ``Graph.node_output``), run the
CORRUPTED batch with that node's activation replaced by its CLEAN activation, and score

    score(n) = (LD(patched_n) - LD(corrupted)) / (LD(clean) - LD(corrupted))

with ``LD`` the batch mean of the per-example task logit difference ``logit_diff(logits) -> (batch,)``.
1 means the node alone restores the clean logit difference, 0 means it does nothing. One batched
forward pass per hook (all its nodes stacked along the batch axis), chunked to bound memory.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.graph import Graph, runnable_graph
from circuits.patching import check_batches, node_selector
from circuits.protocol_check import check_declaration
from circuits.recording import record
from circuits.hook_settings import keeps_hook_settings
from circuits.validate import check_model_and_inputs

_CHUNK_ELEMENTS = 1 << 23


def hidden_sender_hooks(graph: Graph) -> list[str]:
    """Sender hooks whose nodes are hidden nodes (outputs of receiver nodes), in forward order."""
    outputs = set(graph.node_output.values())
    return [h for h in graph.senders() if h in outputs]


def _mean_ld(model: Any, x: Tensor, logit_diff: Callable[[Tensor], Tensor], n: int = 1) -> Tensor:
    ld = logit_diff(model(x))
    if not isinstance(ld, Tensor) or ld.shape != (x.shape[0],):
        raise ValueError(f"logit_diff must return one value per example, shape ({x.shape[0]},), got "
                         f"{tuple(ld.shape) if isinstance(ld, Tensor) else type(ld).__name__}")
    if not bool(torch.isfinite(ld).all()):
        bad = torch.nonzero(~torch.isfinite(ld)).flatten()[:5].tolist()
        raise ValueError(f"logit_diff returned NaN or infinite values (rows {bad}); every score would be NaN. Fix the "
                         "function (a log of 0? a division by 0?)")
    return ld.reshape(n, -1).mean(dim=1)


@keeps_hook_settings
@torch.no_grad()
def node_patching(
    model: Any,
    clean: Float[Tensor, "batch ..."],
    corrupted: Float[Tensor, "batch ..."],
    logit_diff: Callable[[Tensor], Tensor],
) -> dict[str, Float[Tensor, " n_nodes"]]:
    """Per hidden hook, the fraction of the clean logit difference each node restores (module docstring)."""
    if not callable(logit_diff):
        raise TypeError(f"logit_diff must be a callable (logits) -> (batch,), got {type(logit_diff).__name__}")
    check_model_and_inputs(model, clean, corrupted)  # hooks set up, finite weights and inputs
    clean, corrupted = check_batches(model, clean, corrupted)
    graph = check_declaration(model, runnable_graph(model), clean, corrupted)
    hooks = hidden_sender_hooks(graph)
    _, clean_acts = record(model, clean, hooks)
    ld_clean = _mean_ld(model, clean, logit_diff)[0]
    ld_corr = _mean_ld(model, corrupted, logit_diff)[0]
    denom = ld_clean - ld_corr
    if denom == 0:
        raise ValueError("the clean and corrupted batches have the same mean logit difference: nothing to restore")
    b = clean.shape[0]
    out: dict[str, Tensor] = {}
    for h in hooks:
        nodes, src = graph.nodes[h], clean_acts[h]
        per = max(1, _CHUNK_ELEMENTS // max(1, src.numel()))
        scores = []
        for start in range(0, nodes.count, per):
            sel = torch.arange(start, min(nodes.count, start + per), device=src.device)
            n = len(sel)
            keep = node_selector(nodes, sel, src.dim())  # (n, ...): run m patches node sel[m] only

            def patch(act: Tensor, hook: Any, keep: Tensor = keep, n: int = n) -> Tensor:
                stacked = act.reshape(n, b, *act.shape[1:])
                return torch.where(keep, src.unsqueeze(0), stacked).reshape(act.shape)

            x = corrupted.unsqueeze(0).expand(n, *corrupted.shape).reshape(n * b, *corrupted.shape[1:])
            with model.hooks(fwd_hooks=[(h, patch)]):
                ld = _mean_ld(model, x, logit_diff, n)
            scores.append((ld - ld_corr) / denom)
        out[h] = torch.cat(scores)
    return out
