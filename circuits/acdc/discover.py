"""``circuits.acdc(...)``: validate the inputs, pick an engine, run the shared loop, return a ``Circuit``.

``Circuit.effects[e]`` is ``new - current`` when ``e`` was tested. Every engine runs ``circuits.acdc.loop.run``
(SPEC 4's loop) and decides one receiver node's senders its way: ``engine="reference"`` one patched forward pass
per tested edge through the hook points (``circuits.acdc.reference``); ``engine="fast"`` reaches the same decisions
with ``circuits.acdc.mlp`` on MLP-shaped graphs that declare their nonlinearity (``Graph.activations``), with
``circuits.acdc.attention`` on TransformerLens bridges (heads as nodes), and uses the reference on any other
graph. ``Circuit.settings["path"]`` names the path that ran (``circuits.acdc.options``).
"""

from __future__ import annotations

import copy
import time
from typing import Any, Iterable, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.acdc.loop import Decider, Problem, check_threshold, run
from circuits.acdc.mlp import engine as mlp
from circuits.acdc.options import Options, check_options
from circuits.acdc.reference import Reference
from circuits import families
from circuits.circuit import Circuit, model_identity
from circuits.graph import Edge, runnable_graph
from circuits.metrics import resolve
from circuits.validate import check_model_and_inputs
from circuits.patching import (
    check_ablation,
    check_batches,
    corrupted_activations,
    edges_of_mask,
    full_mask,
    mask_of_edges,
    model_device_dtype,
)
from circuits.protocol_check import check_declaration
from circuits.hook_settings import keeps_hook_settings
from circuits.validate_search import check_before_search

ENGINES = ("fast", "reference")


def working_copy(model: Any, dtype: Optional[torch.dtype]) -> Any:
    """``model`` itself if it already computes in ``dtype`` (or ``dtype`` is None), else an upcast deep copy."""
    if dtype is None:
        return model
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float64) or None, got {dtype!r}")
    if model_device_dtype(model)[1] == dtype:
        return model
    # Tensors a module keeps from its last forward with gradients on (TransformerLens's attention keeps its
    # ``_pattern``, after ``eap`` for instance) cannot be deep-copied: they are copied detached.
    memo = {id(v): v.detach().clone() for m in model.modules() for v in vars(m).values()
            if isinstance(v, torch.Tensor) and v.grad_fn is not None}
    work = copy.deepcopy(model, memo)
    family = families.family_of(work)
    if family is not None and family.after_copy is not None:
        family.after_copy(work)  # e.g. a bridge's hooks wired as closures over the original's blocks
    return work.to(dtype)


@keeps_hook_settings  # a bridge's gated hooks (runnable_graph turns them on) are restored on the way out
def acdc(
    model: Any,
    clean: Float[Tensor, "batch ..."],
    corrupted: Float[Tensor, "batch ..."],
    *,
    threshold: float,
    metric: Any = "kl",
    ablation: str = "resample",
    engine: str = "fast",
    edges: Optional[Iterable[Edge]] = None,
    progress: bool = False,
    dtype: Optional[torch.dtype] = torch.float64,
    options: Optional[Options] = None,
) -> Circuit:
    """Discover a circuit with ACDC (module docstring); returns a ``Circuit`` with effects and settings.

    Args:
        threshold: remove an edge when ``metric(C without e) - metric(C) < threshold`` (>= 0).
        metric: "kl", a ``circuits.metrics.Metric`` (e.g. ``logit_diff(...)``) or ``(logits, full) -> scalar``.
        ablation: "resample", "zero" or "mean" (``circuits.patching``).
        engine: "fast" (exact, MLP graphs; other graphs use the reference) or "reference".
        edges: optional subset; edges outside it start absent and are never tested.
        dtype: the floating dtype discovery runs in (default float64): a float32 model is scored on an
            upcast copy (the user's model is untouched; the circuit records the model's own fingerprint),
            so float32 rounding (~1e-7 on the KL) cannot decide a near-tie and both engines give the same
            circuit. ``None``: the model's own dtype (faster, float32 near-ties re-scored, see mlp/engine.py).
        options: ``from circuits.acdc import Options``: which fast paths may run and how (never the circuit).
    """
    check_model_and_inputs(model, clean, corrupted)  # hooks set up, finite weights and inputs
    threshold = check_threshold(threshold)
    check_ablation(ablation)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {list(ENGINES)}")
    options = check_options(options)
    metric_obj = resolve(metric)
    user_model, model = model, working_copy(model, dtype)
    graph = runnable_graph(model)
    clean, corrupted = check_batches(model, clean, corrupted)
    graph = check_declaration(model, graph, clean, corrupted)  # refuses a lying graph; forward order as fired
    device, used_dtype = model_device_dtype(model)
    start_mask = full_mask(graph, device) if edges is None else mask_of_edges(graph, list(edges), device)

    t0 = time.perf_counter()
    a_prime = corrupted_activations(model, corrupted, ablation, graph)
    problem = Problem(model, graph, clean, a_prime, metric_obj, threshold, start_mask, progress, options)
    check_before_search(metric_obj, model, graph, clean, corrupted, a_prime, problem.full_logits, ablation, "acdc")
    with torch.no_grad():  # discovery needs no gradients: no autograd bookkeeping on any op, either engine
        result = run(problem, _engine(engine, problem))
    seconds = time.perf_counter() - t0
    used = result.path.split(".")[0].replace("mlp", "fast").replace("attention", "fast_attention")
    settings = {"algorithm": "acdc", "threshold": threshold, "metric": metric_obj.name, "ablation": ablation,
                "engine": engine, "engine_used": used, "path": result.path, "n_tested": len(result.effects),
                "restricted": edges is not None, "dtype": str(used_dtype).replace("torch.", ""),
                "passes": result.stats.passes, "ties_rescored": result.stats.rescored}
    return Circuit(edges=edges_of_mask(result.mask), n_total_edges=graph.n_edges, seconds=seconds,
                   effects=result.effects, settings=settings, model=model_identity(user_model))


def _engine(engine: str, p: Problem) -> Decider:
    """The decider for ``engine``: "fast" is the MLP engine on MLP chains, the engine the graph's family registered
    (``circuits.families``: the attention engine on bridges) where it applies, else the reference."""
    if engine == "fast" and mlp.supports(p.model, p.graph):
        return mlp.MLP(p)
    family = families.named(p.graph.family)
    fast = families.engine_class(family) if engine == "fast" and family is not None else None
    if fast is not None and fast.supports(p.model, p.graph):
        return fast(p)
    return Reference(p)
