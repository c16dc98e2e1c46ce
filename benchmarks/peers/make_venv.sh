#!/usr/bin/env bash
# The peer environment for compare.py: auto-circuit 1.0.1 with the TransformerLens 2.x it needs, in its own
# virtual environment (default .peers-venv/ at the repository root, git-ignored). Package registries only.
#
#   bash benchmarks/peers/make_venv.sh [VENV_DIR]
#
# torch goes in first and pinned (an unpinned torch pulls GBs of CUDA wheels). auto-circuit goes in with
# --no-deps: its declared dependencies include tracr, kaleido, word2word and a tqdm fork that the modules
# compare.py uses never import; it gets the few packages those modules do import instead. transformer-lens 2.16
# wants numpy < 2, so pyarrow (through datasets) is held below the releases that need numpy 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-.peers-venv}"
PY="$VENV/bin/python"
test -x "$PY" || python3 -m venv "$VENV"
pip() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }
pip "torch==2.13.0"
pip "transformer-lens==2.16.1" "transformers>=4.45,<5" "numpy<2" "datasets<4" "pyarrow<21" \
    "ordered-set>=4.1" "plotly>=5.18" "blobfile>=2" safetensors
pip --no-deps "auto-circuit==1.0.1"
"$PY" - <<'EOF'
import auto_circuit.prune_algos.ACDC, auto_circuit.prune_algos.mask_gradient, auto_circuit.utils.graph_utils
import torch, transformer_lens, transformers
from importlib.metadata import version
print("peer venv ready: auto-circuit", version("auto-circuit"), "transformer-lens", transformer_lens.__version__ if
      hasattr(transformer_lens, "__version__") else version("transformer-lens"), "transformers", transformers.__version__,
      "torch", torch.__version__)
EOF
