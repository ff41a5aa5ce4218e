#!/usr/bin/env bash
# The quickstart (`keras-amb train --dataset synthetic`) with TensorFlow's
# oneDNN kernels off (TF_ENABLE_ONEDNN_OPTS=0, TensorFlow's own default on
# CPUs without AVX512_VNNI/AVX512_BF16/AMX) and as keras-amb runs it (on),
# each in a fresh process, alternating; prints wall time, peak memory and
# test top-1 of each run.
#
#   benchmarks/quickstart_onednn.sh [ROUNDS] [OUTPUT_ROOT]
set -eu
rounds=${1:-2}
root=${2:-$(mktemp -d)}
for round in $(seq 1 "$rounds"); do
  for mode in eigen onednn; do
    out="$root/qs_${mode}_$round"
    rm -rf "$out"
    if [ "$mode" = eigen ]; then setting=0; else setting=1; fi
    TF_ENABLE_ONEDNN_OPTS=$setting /usr/bin/time -f "wall %e s, peak RSS %M KB" \
      keras-amb train --dataset synthetic --output "$out" >"$out.log" 2>"$out.time"
    top1=$(python -c "import json; print(json.load(open('$out/test_metrics.json'))['top1'])")
    echo "round $round $mode (TF_ENABLE_ONEDNN_OPTS=$setting): $(tail -n 1 "$out.time"), test top-1 $top1"
  done
done
