#!/usr/bin/env bash
# The maps issue's section 4 table on a lent GPU (#36): for synthetic v1, v2
# and v3, the default objective against ABN, the no-mining control and the
# paper's objective, each against the same network's CAM and Grad-CAM, with
# per-seed paired differences (benchmarks/map_objectives.py), on the JAX
# backend, most-wanted first under one deadline (BUDGET seconds, default
# 540), so a short lease returns the rows it reached. Results go to $OUT.
#
# keras-amb's input pipelines are tf.data, so the machine needs TensorFlow
# (the CPU build is enough) beside JAX with CUDA. The lent H200 image seen so
# far has JAX and PyTorch but no TensorFlow, and TensorFlow's wheel is far
# over what a call can carry (64 MiB): there this script stops at once,
# saying so, rather than spend the lease.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=jax
if ! python3 -c "import tensorflow, jax, keras" 2>/dev/null; then
  echo "gpu_ablation: needs tensorflow, jax and keras importable here; stopping." | tee "$OUT/maps.md"
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
deadline=$((SECONDS + ${BUDGET:-540}))
run() {  # name, map_objectives.py args...
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 60 ]; then echo "### $1: skipped, $left s left" | tee -a "$OUT/maps.md"; return; fi
  echo "### $1 (started at ${SECONDS} s)" | tee -a "$OUT/maps.md"
  timeout "$left" python3 benchmarks/map_objectives.py --output "/tmp/$1" \
    --report "$OUT/maps_$1" --split test "${@:2}" 2>&1 \
    | grep -v -E "^(I|W)0000|absl|oneDNN" | tail -n 40 | tee -a "$OUT/maps.md"
}
variants="abn no-mining paper area-attn"
run synthetic_v1 --config synthetic --seeds 0 1 2 3 4 --variants $variants
run synthetic_v2 --config synthetic_v2 --seeds 0 1 2 3 4 --variants $variants
run synthetic_v3 --config synthetic_v3 --seeds 0 1 2 3 4 --variants $variants
echo "done at ${SECONDS} s" | tee -a "$OUT/maps.md"
