"""Leave the user's model as it was: the gated TransformerLens hooks a circuit function turns on are turned back.

Building a bridge's graph (SPEC 7) switches on ``use_attn_result``, ``use_split_qkv_input`` and ``use_hook_mlp_in``
(per-head results and split q/k/v inputs cost time and memory on every later forward pass). The public functions
of ``circuits`` that build it (``graph_of`` itself included) restore the settings the user had on the way out,
also when they raise. Inside them the graph comes from ``graph.runnable_graph``, which leaves the hooks on for
the work (on the user's model or on a working copy of it, e.g. ``acdc``'s float64 copy).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, TypeVar

GATED = ("use_attn_result", "use_split_qkv_input", "use_hook_mlp_in")
F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def hook_settings_kept(model: Any) -> Iterator[None]:
    """Restore ``model.cfg``'s gated-hook flags on exit (through ``model.set_<flag>`` where it has one)."""
    cfg = getattr(model, "cfg", None)
    before = {flag: getattr(cfg, flag) for flag in GATED if isinstance(getattr(cfg, flag, None), bool)}
    try:
        yield
    finally:
        _restore(model, cfg, before)


def _restore(model: Any, cfg: Any, before: dict[str, bool]) -> None:
    for flag, value in before.items():
        if getattr(cfg, flag) != value:
            setter = getattr(model, f"set_{flag}", None)
            if callable(setter):
                setter(value)
            else:
                setattr(cfg, flag, value)


def keeps_hook_settings(fn: F) -> F:
    """Decorator: ``fn(model, ...)`` (``model`` first, or passed by name) runs inside ``hook_settings_kept(model)``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with hook_settings_kept(args[0] if args else kwargs.get("model")):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
