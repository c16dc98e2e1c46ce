"""Portable TransformerLens imports.

transformer-lens 4.x exports ``HookedRootModule`` from the package root only; 2.x had it in
``transformer_lens.hook_points``. ``HookPoint`` lives in ``hook_points`` in both.
"""

from __future__ import annotations

try:  # transformer-lens >= 3
    from transformer_lens import HookedRootModule
except ImportError:  # pragma: no cover - transformer-lens 2.x
    from transformer_lens.hook_points import HookedRootModule  # type: ignore[no-redef]

from transformer_lens.hook_points import HookPoint

__all__ = ["HookedRootModule", "HookPoint"]
