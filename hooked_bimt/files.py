"""The file names of a saved model, one place for every checkpoint format (MNIST MLPs, BIMT transformers, the
shipped induction model). Torch-free: the command line checks ``--out`` with them before importing torch."""

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
