"""Train one BIMT model on MNIST and look at it.

    python demos/train_one.py [--regime bimt] [--seed 0] [--out runs/one] [--quick]

``--quick`` (or HOOKED_BIMT_QUICK=1) trains for a few dozen steps on a subset: seconds, for tests.
"""

import argparse
import os

from circuits.validate import check_output_dir
from hooked_bimt.study.presets import demo_training
from hooked_bimt import train
from hooked_bimt.memory import TrainingMemoryMeter

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--regime", default="bimt", help="vanilla, l1, l1_local, l1_swap or bimt")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default=None, help="save the trained model here (model.safetensors + config.json)")
parser.add_argument("--quick", action="store_true", default=os.environ.get("HOOKED_BIMT_QUICK") == "1")
args = parser.parse_args()
if args.out:  # refused now, not after training: a path under a file, or a model already saved there
    check_output_dir(args.out, holds=("model.safetensors", "config.json"))

setup = demo_training(args.quick)
result = train(args.regime, setup.config, seed=args.seed, data=setup.data, hook=TrainingMemoryMeter())  # + peak memory

model = result.model
print(f"{args.regime}: widths {model.widths}, test accuracy {result.metrics['test_accuracy']:.4f}")
print(f"training: {result.metrics['train_seconds']:.1f} s, peak memory {result.metrics['peak_memory_bytes']} bytes "
      f"({result.metrics['memory_method']}), {result.metrics['swaps']} swaps")
for row in result.history[-3:]:
    print({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})

# Every hook point is a TransformerLens HookPoint: cache the activations of a few test images.
test = setup.test
logits, cache = model.run_with_cache(test.flat()[:4].to(model.dtype))
print("predicted", logits.argmax(-1).tolist(), "true", test.labels[:4].tolist())
print({name: tuple(act.shape) for name, act in cache.items()})
if args.out:
    result.save(args.out)
    print(f"saved to {args.out}")
