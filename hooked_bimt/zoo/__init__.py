"""More architectures that declare a circuit graph: a residual MLP and an attention-only transformer."""

from hooked_bimt.zoo.attn_only import HookedAttnOnly
from hooked_bimt.zoo.residual_mlp import HookedResidualMLP

__all__ = ["HookedAttnOnly", "HookedResidualMLP"]
