#!/usr/bin/env bash
# Times a part of the JAX test suite under XLA_FLAGS variants, alternating
# fresh processes (one pytest run per variant per round), on the CPU.
#   benchmarks/suite_xla_flags.sh [--variants "NAME ..."] ROUNDS PYTEST_ARGS...
# e.g.  benchmarks/suite_xla_flags.sh 2 tests/test_model.py -k "bn_statistics or center_lr"
# Prints, per run: wall seconds, user and system CPU seconds, pytest's summary.
# The variants: the suite's flags with three suites at once (run_backends.sh,
# before the thunk-runtime probe), with LLVM's expensive passes off, and with
# XLA's classic CPU runtime instead of its thunk runtime.
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--variants" ]; then  # --variants "suite classic_runtime": a subset
  only=$2
  shift 2
fi
rounds=$1
shift
base="--xla_backend_optimization_level=0 --xla_cpu_multi_thread_eigen=false"
names=(suite no_expensive_passes classic_runtime)
flags=("$base" "$base --xla_llvm_disable_expensive_passes=true"
       "$base --xla_cpu_use_thunk_runtime=false")
log=$(mktemp)
times=$(mktemp)
trap 'rm -f "$log" "$times"' EXIT
for round in $(seq "$rounds"); do
  for i in "${!names[@]}"; do
    if [ -n "${only:-}" ] && ! grep -qw -- "${names[$i]}" <<<"$only"; then
      continue
    fi
    /usr/bin/time -o "$times" -f "%e s wall, %U s user, %S s sys" env KERAS_BACKEND=jax \
      OMP_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_FLAGS="${flags[$i]}" \
      python -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1
    echo "round $round ${names[$i]}: $(cat "$times") ($(tail -n 1 "$log"))"
  done
done
