"""BIMT on transformers (SPEC section 8): Hugging Face GPT-2-style modules trained under the five regimes,
with the original BioTransformer's coordinates, connection cost and function-preserving swaps; the trained
model loads back as a TransformerLens 4 ``TransformerBridge`` for every ``circuits`` function."""

from hooked_bimt.transformer.cost import connection_cost
from hooked_bimt.transformer.relocate import relocate
from hooked_bimt.transformer.swaps import swap_heads, swap_mlp_neurons, swap_residual

__all__ = ["connection_cost", "relocate", "swap_heads", "swap_mlp_neurons", "swap_residual"]
