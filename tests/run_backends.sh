#!/usr/bin/env bash
# Runs the test suite once per Keras backend (tensorflow, jax, torch).
# --fast runs the fast tier: model, loss, layer, data and export unit tests,
# no trainings through the command line (the tests marked `slow`).
# Extra arguments go to pytest, e.g. `tests/run_backends.sh -x -k losses`.
# KERAS_AMB_TEST_BACKENDS="jax torch" limits the backends.
# KERAS_AMB_TEST_JOBS=N runs up to N backends at once (default: all of them;
# each backend's suite is mostly single-threaded process start-up and small
# models, so on 2 cores three at once take about two thirds of the time one
# after the other). With more than one at a time, each backend's output is
# printed whole when it finishes; with KERAS_AMB_TEST_JOBS=1 it streams.
set -u
cd "$(dirname "$0")/.."
tier=()
if [ "${1:-}" = "--fast" ]; then
  tier=(-m "not slow")
  shift
fi
backends=${KERAS_AMB_TEST_BACKENDS:-"tensorflow jax torch"}
jobs=${KERAS_AMB_TEST_JOBS:-$(wc -w <<<"$backends")}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# Trainings that do not depend on the backend under test are done once for
# all the suites and copied (tests/helpers.py, trained_once).
export KERAS_AMB_TEST_SHARED=${KERAS_AMB_TEST_SHARED:-"$logs/shared"}
# JAX compiles every new model's steps; the suite builds the same small
# models many times, in-process and in the commands it starts. Its
# persistent cache (a private folder, removed at the end) compiles each
# once: three tests of test_model.py took 78 s cold, 30 s warm.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-"$logs/jax-cache"}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=${JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES:--1}
# Ctrl-C reaches every process of the terminal's group; a TERM sent to this
# script alone (a CI timeout, say) is passed on to the background backends.
stop_backends() {
  for pid in $(jobs -p); do
    pkill -TERM -P "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
  done
  exit 143
}
trap stop_backends TERM

suite() {  # backend [pytest args...]: the suite under one backend
  local backend=$1
  shift
  KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=3 python -m pytest -q -p no:cacheprovider --durations=10 \
    --basetemp "$logs/tmp-$backend" "${tier[@]}" "$@" 2>&1
}

run_one() {  # backend [pytest args...]; writes $logs/<backend>.log and .rc
  suite "$@" >"$logs/$1.log"
  echo $? >"$logs/$1.rc"
}

# Backends at once share the cores: one compute thread per process (each
# suite's processes would otherwise each start a pool as wide as the
# machine, and on 2 cores three suites then spend their time switching:
# a sample of the suite took 344 s with the pools, 242 s with one thread).
# TensorFlow keeps its own pools: with TF_NUM_INTRAOP_THREADS=1 two
# --deterministic runs logged epoch losses that differed in the 7th digit
# (2 runs in 3 under load; 0 in 3 with the default pools). A variable
# already set is kept.
# XLA (JAX) compiles every new program of the suite's small models, and
# compiling costs more than running them: at LLVM optimisation level 0 a tiny
# `keras-amb train --distribute` took 58 CPU-s instead of 82, four
# test_model tests 67 instead of 102, and a 10-epoch training
# (test_pc_training) 94 instead of 101 (each alone, on the 2-core AVX-512
# CPU). The programs are the same, compiled with less optimisation (their
# float32 results may differ in the last bits, as they do between CPUs).
# Users' runs keep XLA's default.
# XLA's older loop emitters (not its newer fusion emitters) compile the
# suite's programs faster, the many small ones JAX compiles for each eager
# operation most of all: 300 one-operation programs in 7.9 s instead of
# 13.1 s, the fast tier of test_model.py and test_evidence.py in about 30%
# less CPU time (benchmarks/results/cpu_2core_suite_xla_flags.md). XLA
# aborts on a flag it does not know, so it is used only where JAX and
# TensorFlow accept it. (The classic CPU runtime this suite once chose,
# --xla_cpu_use_thunk_runtime=false, is "no longer supported" in jaxlib 0.10.)
xla_flags="--xla_backend_optimization_level=0"
if [ "$jobs" -gt 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  xla_flags="$xla_flags --xla_cpu_multi_thread_eigen=false"
fi
if [ -z "${XLA_FLAGS:-}" ] && XLA_FLAGS="$xla_flags --xla_cpu_use_fusion_emitters=false" \
    TF_CPP_MIN_LOG_LEVEL=3 python -c "import jax.numpy as jnp, tensorflow as tf
(jnp.zeros(2) + 1).block_until_ready()
tf.function(lambda x: x + 1, jit_compile=True)(tf.zeros(2))" >/dev/null 2>&1; then
  xla_flags="$xla_flags --xla_cpu_use_fusion_emitters=false"
fi
export XLA_FLAGS=${XLA_FLAGS:-"$xla_flags"}

start=$SECONDS
if [ "$jobs" -le 1 ]; then
  for backend in $backends; do
    echo "=== KERAS_BACKEND=$backend"
    suite "$backend" "$@" | tee "$logs/$backend.log"
    echo "${PIPESTATUS[0]}" >"$logs/$backend.rc"
  done
else
  echo "running the suite under: $backends ($jobs at a time; each backend's output follows when it ends)"
  running=0
  for backend in $backends; do
    if [ "$running" -ge "$jobs" ]; then
      wait -n
      running=$((running - 1))
    fi
    run_one "$backend" "$@" &
    running=$((running + 1))
  done
  wait
  for backend in $backends; do
    echo "=== KERAS_BACKEND=$backend"
    cat "$logs/$backend.log"
  done
fi

total_passed=0
total_failed=0
status=0
for backend in $backends; do
  rc=$(cat "$logs/$backend.rc" 2>/dev/null || echo 1)
  summary=$(tail -n 1 "$logs/$backend.log")
  passed=$(grep -oE '[0-9]+ passed' <<<"$summary" | awk '{s += $1} END {print s + 0}')
  failed=$(grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" | awk '{s += $1} END {print s + 0}')
  total_passed=$((total_passed + ${passed:-0}))
  total_failed=$((total_failed + ${failed:-0}))
  if [ "$rc" -ne 0 ]; then
    echo "pytest under $backend exited with $rc"
    status=1
  fi
done
echo "backends: ${total_passed} passed, ${total_failed} failed ($((SECONDS - start)) s)"
exit $status
