"""Checks every public entry point of ``circuits`` runs before any work: each error names the problem
and what to do. One call at the top of a function (``check_model_and_inputs``) keeps bodies unchanged.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any, Callable

import torch
from torch import Tensor

from circuits.paths import check_output_dir, check_output_file  # noqa: F401  (re-exported: torch-free home)
from circuits.validate_tokens import check_no_padding, check_not_meta, check_token_ids

EAP_ABLATIONS = ("resample",)  # EAP's scores are a' - a with a' from the corrupted run: resample only


def _is_hugging_face(model: Any) -> bool:
    return any(c.__module__.startswith("transformers.") for c in type(model).__mro__)


def check_model(model: Any) -> None:
    """A hooked model: ``run_with_hooks`` and a non-empty ``hook_dict`` (``setup()`` called). A bare Hugging Face
    model is told the one line that wraps it in a TransformerLens 4 ``TransformerBridge``."""
    name = type(model).__name__
    if _is_hugging_face(model) and not callable(getattr(model, "run_with_hooks", None)):
        raise TypeError(
            f"{name} is a Hugging Face model without TransformerLens hook points: wrap it in a TransformerBridge "
            "first: from transformer_lens.model_bridge.sources import build_bridge_from_module; bridge = "
            f"build_bridge_from_module(model, {name!r}, hf_config=model.config, tokenizer=None, device='cpu') "
            "(or TransformerBridge.boot_transformers(name) for a hub model; docs/transformers.md)"
        )
    if not callable(getattr(model, "run_with_hooks", None)):
        graph = "" if callable(getattr(model, "circuit_graph", None)) else "declares no circuit graph and "
        raise TypeError(
            f"{name} {graph}has no TransformerLens hook points (no run_with_hooks): subclass "
            "transformer_lens.HookedRootModule, "
            "put a HookPoint where each activation is read, call self.setup() at the end of __init__, and declare "
            "circuit_graph() (docs/your_model.md)"
        )
    try:
        hooks = model.hook_dict
    except AttributeError:
        hooks = None
    if not hooks:
        raise TypeError(f"{name} has no hook points registered: call self.setup() at the end of its __init__ "
                        "(TransformerLens HookedRootModule collects its HookPoints there)")


def all_finite(t: Tensor) -> bool:
    """Whether every entry of the floating tensor ``t`` is finite, exactly, from one sum (15x cheaper on a CPU than
    ``isfinite(t).all()``, which writes a mask as large as ``t``): NaN and infinities propagate through a sum, so a
    finite sum means finite entries; a sum that overflowed on finite entries falls back to the entrywise test."""
    low = t.dtype in (torch.float16, torch.bfloat16)  # summed in float32: no overflow from half-precision entries
    if bool(torch.isfinite(t.sum(dtype=torch.float32) if low else t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def check_finite_parameters(model: Any) -> None:
    """NaN or infinite weights make every effect NaN (and ACDC keep every edge): refuse them by name. Run on every
    call: in-place writes through ``.data`` leave no trace a cache could key on."""
    named = getattr(model, "named_parameters", None)
    for pname, p in named() if callable(named) else ():
        if p.is_floating_point() and not all_finite(p):
            raise ValueError(f"{type(model).__name__} parameter {pname!r} holds NaN or infinite values; "
                             "circuit effects would be NaN. Check the training run or the checkpoint")


def check_finite_inputs(**batches: Any) -> None:
    """Floating input batches must be finite (NaN is also caught by ``check_batches``)."""
    for name, x in batches.items():
        if isinstance(x, Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains infinite or NaN values; the effects would be NaN and every edge kept. "
                             "Clean the batch first (e.g. torch.nan_to_num or clamp)")


def check_model_and_inputs(model: Any, clean: Any, corrupted: Any) -> None:
    """All the checks above and the token checks (``circuits.validate_tokens``: device, vocabulary, context
    length, padding), in one line at the top of a public function."""
    check_model(model)
    check_not_meta(clean=clean, corrupted=corrupted)
    check_finite_parameters(model)
    check_finite_inputs(clean=clean, corrupted=corrupted)
    check_token_ids(model, clean=clean, corrupted=corrupted)
    check_no_padding(model, clean=clean, corrupted=corrupted)


def check_metric_values(metric: Callable[[Tensor, Tensor], Any], full_logits: Tensor, empty_logits: Tensor,
                        where: str) -> None:
    """The metric on the full circuit's logits (the clean run) and the empty circuit's (every edge ablated), once,
    before a search: it must give one finite number on each, or every effect would be NaN (and ACDC keep every
    edge) or the search fail midway."""
    for which, logits in (("full circuit (the clean run)", full_logits), ("empty circuit (every edge ablated)",
                                                                          empty_logits)):
        out = torch.as_tensor(metric(logits, full_logits))
        if out.numel() != 1:
            raise ValueError(f"{where} needs a metric returning one number per batch; on the logits of the {which} "
                             f"it returned shape {tuple(out.shape)} (a per-example metric?). Average it: "
                             "lambda logits, full: m(logits, full).mean()")
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"{where}: the metric is {float(out)} on the logits of the {which}; every effect "
                             "would be NaN or infinite (and ACDC keep every edge). Fix the metric (a log of 0? a "
                             "division by 0?)")


def check_distinct_pair(clean: Tensor, corrupted: Tensor, where: str) -> None:
    """Under resample ablation an edge's effect comes from ``a' - a``: identical batches make every effect exactly 0
    (an empty circuit). Identical batches are an error; some identical rows a warning (those rows add nothing)."""
    same = (clean == corrupted).reshape(clean.shape[0], -1).all(dim=1)
    if bool(same.all()):
        raise ValueError(f"{where}: clean and corrupted are identical, so every edge's effect is exactly 0 (resample "
                         "ablation patches in the same activations); pass a corrupted batch that differs, or use "
                         "ablation='zero' or 'mean'")
    if bool(same.any()):
        rows = torch.nonzero(same).flatten()[:5].tolist()
        warnings.warn(f"{where}: {int(same.sum())} of {clean.shape[0]} clean rows equal their corrupted row "
                      f"(rows {rows}...); they contribute nothing to any effect", UserWarning, stacklevel=3)


def scalar_metric(fn: Callable[[Tensor, Tensor], Tensor], where: str) -> Callable[[Tensor, Tensor], Tensor]:
    """``fn`` with its output checked to be one number (a per-example metric is refused by name)."""

    def checked(logits: Tensor, full_logits: Tensor) -> Tensor:
        out = torch.as_tensor(fn(logits, full_logits))
        if out.numel() != 1:
            raise ValueError(f"{where} needs a metric returning one number per batch; this one returned shape "
                             f"{tuple(out.shape)} (a per-example metric?). Average it: lambda l, f: m(l, f).mean()")
        return out.reshape(())

    return checked


def check_labels_range(labels: Tensor, n_classes: int, name: str) -> None:
    """Class labels must lie in ``0 .. n_classes - 1`` (a negative label would silently count from the end)."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][:5].tolist()
        raise ValueError(f"{name} must be class indices in 0..{n_classes - 1}; got {bad}")


def check_scalar_labels(labels: Any, batch: int, name: str) -> None:
    """A single label where one per example is needed: say how to make the tensor."""
    if isinstance(labels, (int, float)) or (isinstance(labels, Tensor) and labels.dim() == 0):
        raise ValueError(f"{name} must be one label per example ({batch} of them), got the single value {labels!r}; "
                         f"use torch.full(({batch},), label)")


def check_eap_ablation(ablation: Any) -> None:
    """``eap_then_acdc`` ranks edges with EAP, whose scores assume resample ablation; other ablations would
    rank by the wrong quantity, so they are refused rather than silently mixed."""
    if ablation not in EAP_ABLATIONS:
        raise ValueError(f"eap_then_acdc ranks edges by EAP, which scores resample ablation only, but ablation="
                         f"{ablation!r} was asked for ACDC; use ablation='resample', or run circuits.acdc(..., "
                         f"ablation={ablation!r}) without the EAP pre-filter")


# ---------------------------------------------------------------------------- circuit files
def a_type(kind: type) -> str:
    """A type named with its article, as a sentence says it: ``an int``, ``a list``, ``a string``."""
    name = {"str": "string", "NoneType": "None"}.get(kind.__name__, kind.__name__)
    return name if name == "None" else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def content_sha256(d: dict[str, Any]) -> str:
    """SHA-256 of a circuit dict without its ``sha256`` key, serialised canonically (sorted keys, no spaces)."""
    body = {k: v for k, v in d.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_edge_item(item: Any, where: str) -> None:
    if not isinstance(item, list) or len(item) != 4:
        raise ValueError(f"{where}: an edge must be a list [sender, sender_index, receiver, receiver_index], "
                         f"got {item!r}")
    sender, si, receiver, ri = item
    if not isinstance(sender, str) or not isinstance(receiver, str):
        raise ValueError(f"{where}: edge {item!r} must name its sender and receiver hooks as strings")
    for idx in (si, ri):
        if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
            raise ValueError(f"{where}: edge {item!r} has node index {idx!r}; node indices are non-negative integers")


def check_circuit_dict(d: Any, source: str) -> None:
    """Structure of a circuit file (``Circuit.to_dict``) before it is parsed; errors name ``source``."""
    if not isinstance(d, dict):
        raise ValueError(f"{source} is not a hooked-bimt circuit: the top level is {a_type(type(d))}, not an object")
    for key, kind in (("edges", list), ("n_total_edges", int)):
        if key not in d:
            raise ValueError(f"{source} is not a complete circuit file: no {key!r} (it was written by something else "
                             "or truncated); re-save it with Circuit.save")
        if not isinstance(d[key], kind) or isinstance(d[key], bool):
            raise ValueError(f"{source}: {key!r} must be {a_type(kind)}, got {a_type(type(d[key]))}")
    for item in d["edges"]:
        _check_edge_item(item, source)
    effects = d.get("effects", [])
    if not isinstance(effects, list):
        raise ValueError(f"{source}: 'effects' must be a list of [sender, i, receiver, j, effect]")
    for item in effects:
        if not isinstance(item, list) or len(item) != 5 or not isinstance(item[4], (int, float)):
            raise ValueError(f"{source}: an effect must be [sender, i, receiver, j, number], got {item!r}")
        _check_edge_item(item[:4], source)
    for key in ("settings", "model"):
        if not isinstance(d.get(key, {}), dict):
            raise ValueError(f"{source}: {key!r} must be an object")
