#!/usr/bin/env bash
# Runs the test suite once per Keras backend (tensorflow, jax, torch).
# Extra arguments go to pytest, e.g. `tests/run_backends.sh -x -k losses`.
# KERAS_AMB_TEST_BACKENDS="jax torch" limits the backends.
set -u
cd "$(dirname "$0")/.."
backends=${KERAS_AMB_TEST_BACKENDS:-"tensorflow jax torch"}
total_passed=0
total_failed=0
status=0
for backend in $backends; do
  echo "=== KERAS_BACKEND=$backend"
  log=$(mktemp)
  KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=3 python -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  summary=$(tail -n 1 "$log")
  passed=$(grep -oE '[0-9]+ passed' <<<"$summary" | awk '{s += $1} END {print s + 0}')
  failed=$(grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" | awk '{s += $1} END {print s + 0}')
  total_passed=$((total_passed + ${passed:-0}))
  total_failed=$((total_failed + ${failed:-0}))
  rm -f "$log"
  if [ "$rc" -ne 0 ]; then
    echo "pytest under $backend exited with $rc"
    status=1
  fi
done
echo "backends: ${total_passed} passed, ${total_failed} failed"
exit $status
