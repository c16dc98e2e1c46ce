"""BIMT on transformers (SPEC section 8): Hugging Face GPT-2 (and Llama) modules trained under the five regimes,
with the original BioTransformer's coordinates, connection cost and function-preserving swaps; the trained
model loads back as a TransformerLens 4 ``TransformerBridge`` for every ``circuits`` function."""

from hooked_bimt.transformer.cost import connection_cost
from hooked_bimt.transformer.relocate import relocate
from hooked_bimt.transformer.swaps import swap_heads, swap_kv_groups, swap_mlp_neurons, swap_residual
from hooked_bimt.transformer.tasks import InductionTask, ModularAdditionTask, Prompts, get_task
from hooked_bimt.transformer.training import TrainConfig, TrainResult, Trainer, to_bridge, train
from hooked_bimt.transformer.checkpoint import load, save

__all__ = ["connection_cost", "relocate", "swap_heads", "swap_kv_groups", "swap_mlp_neurons", "swap_residual",
           "InductionTask", "ModularAdditionTask", "Prompts", "get_task", "TrainConfig", "TrainResult", "Trainer",
           "to_bridge", "train", "load", "save"]
