#!/usr/bin/env bash
# What an installed scikit-learn costs every process that imports
# TensorFlow or Keras: Keras imports it (its scikit-learn wrappers) whenever
# it is installed. Alternating fresh processes, the same imports as a
# `keras-amb train` (TensorFlow, Keras, the trainer), with scikit-learn
# importable ("installed") and made unimportable ("absent", as if not
# installed). Needs scikit-learn installed.
#   benchmarks/import_scikit_learn.sh [ROUNDS]   (KERAS_BACKEND picks the backend)
set -u
rounds=${1:-8}
times=$(mktemp)
trap 'rm -f "$times"' EXIT
python -c "import sklearn" || { echo "scikit-learn is not installed"; exit 2; }
imports="import tensorflow, keras, keras_amb.trainer"
echo "KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}; $(nproc) CPU(s); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cpus_installed=""
cpus_absent=""
for round in $(seq "$rounds"); do
  for variant in installed absent; do
    block=""
    [ "$variant" = absent ] && block="import sys; sys.modules['sklearn'] = None; "
    /usr/bin/time -o "$times" -f "%e %U %S" env TF_CPP_MIN_LOG_LEVEL=3 python -c "$block$imports" 2>/dev/null
    read -r wall user sys <"$times"
    cpu=$(python -c "print(round($user + $sys, 2))")
    echo "round $round $variant: $wall s wall, $cpu s CPU"
    eval "cpus_$variant+=\" $cpu\""
  done
done
for variant in installed absent; do
  eval "values=\$cpus_$variant"
  echo "mean CPU, $variant: $(python -c "v = [float(x) for x in '$values'.split()]; print(round(sum(v) / len(v), 2))") s"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
