"""More architectures that declare a circuit graph: a residual MLP and an attention-only transformer.

Also (imported on demand, they need ``transformers``): ``hooked_bimt.zoo.induction`` (a 2-layer transformer
trained here on induction, loaded as a TransformerLens 4 bridge) and ``hooked_bimt.zoo.planted_bridge`` (a
GPT-2 bridge with a planted ground-truth circuit); ``hooked_bimt.zoo.planted`` (the three planted families).
"""

from hooked_bimt.zoo.attn_only import HookedAttnOnly
from hooked_bimt.zoo.residual_mlp import HookedResidualMLP

__all__ = ["HookedAttnOnly", "HookedResidualMLP"]
