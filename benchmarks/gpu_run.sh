#!/usr/bin/env bash
# The GPU benchmark table (ResNet-50, 224 px, batch 16): run on a lent GPU
# machine whose image has JAX and PyTorch with CUDA but no TensorFlow, with
# the keras/namex/optree wheels carried in .whl/. Results go to $OUT.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
run() {  # backend, label, extra args
  echo "### $1 $2" | tee -a "$OUT/bench.md"
  KERAS_BACKEND=$1 timeout ${LIMIT:-200} python3 benchmarks/train_step.py --steps ${STEPS:-5} --warmup 2 "${@:3}" 2>&1 \
    | grep -v -E "^(I|W)0000|absl|oneDNN" | tee -a "$OUT/bench.md"
}
run torch "eager fp32" --jit-compile off
run torch "eager mixed_float16" --jit-compile off --mixed-precision
run jax "XLA fp32" --jit-compile on
run jax "XLA mixed_float16" --jit-compile on --mixed-precision
STEPS=2 LIMIT=150 run jax "no XLA fp32" --jit-compile off
