#!/bin/bash
# The GPU check a lent machine runs (device tool), as run on an H200 on 2026-11-28 (benchmarks/RESULTS.md,
# "On a GPU"): the CUDA tests, claim 4 on CUDA, the MLP engines on CUDA. From the repository root:
#   bash benchmarks/gpu_check.sh WHEELS_DIR [CACHE]
# WHEELS_DIR: wheels of what the machine's image lacks (transformer-lens, datasets, dill, multiprocess,
# submitit, beartype, fancy-einsum, typeguard, and transformers to match ours), made here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 -d DIR ...
# CACHE: the model file bench_acdc.py --cache wrote (it trains one when absent). Logs go to $OUT when set.
set -u
export PYTHONUNBUFFERED=1 CI=true
WHEELS=${1:?wheels directory}; CACHE=${2:-/tmp/bench_vanilla300.safetensors}; LOGS=${OUT:-/tmp/gpu_check}
mkdir -p "$LOGS"; T0=$(date +%s)
step(){ echo; echo "=== [t+$(( $(date +%s) - T0 ))s] $*"; }
step setup
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
export PYTHONPATH=/tmp/site:.
python3 -c "import sys, torch, transformers, transformer_lens; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))" || exit 1
step "CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="-ra" tests/test_cuda.py "tests/hooked_bimt/test_zoo.py::test_zoo_runs_on_gpu" 2>&1 | tee "$LOGS/cuda_tests.log" | tail -20
step "cuBLAS workspace probe (what CUDA's allocator holds after a process's first matrix product)"
for cfg in default ":0:0"; do
  if [ "$cfg" = default ]; then unset CUBLAS_WORKSPACE_CONFIG; else export CUBLAS_WORKSPACE_CONFIG=$cfg; fi
  python3 -c "
import torch
x = torch.randn(100, 784, device='cuda'); w = torch.randn(100, 784, device='cuda')
a = torch.cuda.memory_allocated(); y = x @ w.T; torch.cuda.synchronize()
print('CUBLAS_WORKSPACE_CONFIG=$cfg: allocated before the first matmul', a, 'bytes; after', torch.cuda.memory_allocated(), 'bytes')"
done
unset CUBLAS_WORKSPACE_CONFIG
step "claim 4: bench_memory.py --device cuda"
timeout 90 python3 benchmarks/bench_memory.py --device cuda 2>&1 | tee "$LOGS/bench_memory_cuda.log"
step "claim 4: bench_memory_original.py cuda"
timeout 150 python3 benchmarks/bench_memory_original.py cuda 2>&1 | tee "$LOGS/bench_memory_original_cuda.log"
step "MLP engines on CUDA (threshold 1e-4)"
timeout 120 python3 benchmarks/bench_acdc.py --regime vanilla --steps 300 --cache "$CACHE" --model-dtype float32 --threshold 1e-4 --repeats 3 --device cuda 2>&1 | tee "$LOGS/bench_acdc_cuda.log"
step done
