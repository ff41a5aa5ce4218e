#!/usr/bin/env bash
# Times a part of the JAX test suite under XLA_FLAGS variants, alternating
# fresh processes (one pytest run per variant per round), on the CPU.
#   benchmarks/suite_xla_flags.sh [--variants "NAME ..."] ROUNDS PYTEST_ARGS...
# e.g.  benchmarks/suite_xla_flags.sh 2 tests/test_model.py -k "bn_statistics or center_lr"
# Prints, per run: wall seconds, user and system CPU seconds, pytest's summary.
# The variants: the suite's flags with three suites at once (run_backends.sh,
# before the probes of the flags below), with LLVM's expensive passes off,
# with XLA's classic CPU runtime instead of its thunk runtime (jaxlib 0.10
# ignores that flag: "no longer supported"), and with XLA's older loop
# emitters instead of its fusion emitters.
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--variants" ]; then  # --variants "suite classic_runtime": a subset
  only=$2
  shift 2
fi
rounds=$1
shift
base="--xla_backend_optimization_level=0 --xla_cpu_multi_thread_eigen=false"
names=(suite no_expensive_passes classic_runtime old_emitters)
flags=("$base" "$base --xla_llvm_disable_expensive_passes=true"
       "$base --xla_cpu_use_thunk_runtime=false" "$base --xla_cpu_use_fusion_emitters=false")
log=$(mktemp)
times=$(mktemp)
trap 'rm -f "$log" "$times"' EXIT
for round in $(seq "$rounds"); do
  for i in "${!names[@]}"; do
    if [ -n "${only:-}" ] && ! grep -qw -- "${names[$i]}" <<<"$only"; then
      continue
    fi
    cache=$(mktemp -d)  # the suite's JAX compilation cache, fresh per run
    /usr/bin/time -o "$times" -f "%e s wall, %U s user, %S s sys" env KERAS_BACKEND=jax \
      JAX_COMPILATION_CACHE_DIR="$cache" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1 \
      OMP_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_FLAGS="${flags[$i]}" \
      python -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1
    rm -rf "$cache"
    echo "round $round ${names[$i]}: $(cat "$times") ($(tail -n 1 "$log"))"
  done
done
