#!/usr/bin/env bash
# The GPU benchmark table (ResNet-50, 224 px, batch 16, K=200): run on a lent
# GPU machine whose image has JAX and PyTorch with CUDA but no TensorFlow, with
# the keras/namex/optree wheels carried in .whl/. Results go to $OUT/bench.md.
#
# The configurations run most-wanted first under one deadline (BUDGET seconds,
# default 480), so a short lease still returns the complete tables it reached.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
KERAS_BACKEND=jax python3 -c "import jax, torch, keras; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, '| keras', keras.__version__)" | tee -a "$OUT/gpu.txt"
deadline=$((SECONDS + ${BUDGET:-480}))
run() {  # backend, label, per-variant timeout, benchmark args...
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 60 ]; then echo "### $1 $2: skipped, $left s left" | tee -a "$OUT/bench.md"; return; fi
  echo "### $1 $2 (started at ${SECONDS} s)" | tee -a "$OUT/bench.md"
  KERAS_BACKEND=$1 timeout "$left" python3 benchmarks/train_step.py --timeout "$3" "${@:4}" 2>&1 \
    | grep -v -E "^(I|W)0000|absl|oneDNN" | tee -a "$OUT/bench.md"
}
run jax "XLA float32" 120 --jit-compile on --steps 20 --warmup 3 --repeats 3
run torch "eager float32" 90 --jit-compile off --steps 10 --warmup 3 --repeats 3
run jax "XLA mixed_bfloat16" 120 --jit-compile on --steps 20 --warmup 3 --repeats 3 --mixed-precision mixed_bfloat16
run torch "eager mixed_bfloat16" 90 --jit-compile off --steps 10 --warmup 3 --repeats 3 --mixed-precision mixed_bfloat16
run jax "XLA mixed_float16" 120 --jit-compile on --steps 20 --warmup 3 --repeats 3 --mixed-precision mixed_float16
run jax "no XLA (op by op) float32" 90 --jit-compile off --steps 2 --warmup 1 --repeats 1
echo "done at ${SECONDS} s" | tee -a "$OUT/bench.md"
