#!/usr/bin/env bash
# What running the training-step unit tests eagerly saves (tests/helpers.py,
# EAGERLY): the fast tier of tests/test_model.py and tests/test_evidence.py
# under one backend, in alternating fresh pytest processes, with the steps
# eager (the suite's default) and compiled (KERAS_AMB_TEST_COMPILED_STEPS=1).
# The suite's XLA flags and JAX compilation cache (a fresh, private one per
# process) are set as tests/run_backends.sh sets them for three suites at once.
#   KERAS_BACKEND=jax benchmarks/eager_unit_tests.sh [ROUNDS]
set -u
cd "$(dirname "$0")/.."
rounds=${1:-2}
cpus=$(nproc)  # before OMP_NUM_THREADS=1, which nproc reports
times=$(mktemp)
trap 'rm -f "$times"' EXIT
export TF_CPP_MIN_LOG_LEVEL=3 OMP_NUM_THREADS=1
export XLA_FLAGS=${XLA_FLAGS:-"--xla_backend_optimization_level=0 --xla_cpu_multi_thread_eigen=false --xla_cpu_use_fusion_emitters=false"}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
echo "KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}; $cpus CPU(s); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  for variant in compiled eager; do
    compiled=0
    [ "$variant" = compiled ] && compiled=1
    cache=$(mktemp -d)
    /usr/bin/time -o "$times" -f "%e %U %S" env KERAS_AMB_TEST_COMPILED_STEPS=$compiled \
      JAX_COMPILATION_CACHE_DIR="$cache" python -m pytest -q -p no:cacheprovider -m "not slow" \
      tests/test_model.py tests/test_evidence.py >"$times.log" 2>&1
    rc=$?
    rm -rf "$cache"
    read -r wall user sys < <(tail -n 1 "$times")  # after "Command exited with..."
    echo "round $round $variant: $wall s wall, $(python -c "print(round($user + $sys, 1))") s CPU, $(tail -n 1 "$times.log") (exit $rc)"
  done
done
rm -f "$times.log"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
