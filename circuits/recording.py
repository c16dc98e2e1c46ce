"""Running a hooked model once and keeping what its hook points saw (any model with ``run_with_hooks``: a
TransformerLens ``HookedRootModule`` or a TransformerBridge). Imports nothing from ``circuits``, so every module
that runs a model, the bridge adapter included, can use it."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor


def fired(model: Any, x: Tensor, hooks: Any) -> tuple[Tensor, dict[str, Float[Tensor, "batch ..."]]]:
    """Run ``x`` once without gradients; the output and the detached activation at each of ``hooks`` that fired,
    in the order they first fired (the forward order), keyed by the name each was registered under (not
    ``hook.name``, which some wrappers canonicalise)."""
    store: dict[str, Tensor] = {}

    def saver(name: str):
        def save(act: Tensor, hook: Any) -> None:
            if name not in store:
                store[name] = act.detach()
        return save

    with torch.no_grad():
        out = model.run_with_hooks(x, fwd_hooks=[(h, saver(h)) for h in dict.fromkeys(hooks)])
    return out, store


def record(model: Any, x: Tensor, hooks: Any) -> tuple[Tensor, dict[str, Float[Tensor, "batch ..."]]]:
    """``fired``, and a ``ValueError`` naming the hooks that never fired."""
    out, store = fired(model, x, hooks)
    check_fired(model, hooks, store)
    return out, store


def check_fired(model: Any, hooks: Any, store: dict) -> None:
    """A ``ValueError`` naming the ``hooks`` that a run never fired (not in ``store``)."""
    missing = sorted(set(hooks) - set(store))
    if missing:
        raise ValueError(f"{type(model).__name__}: declared hook points never fired in a forward pass: {missing}")
