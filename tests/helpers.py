"""Shared checks for keras-amb's layers and models, in the manner of
keras-hub's `TestCase`: run a layer, round-trip its config, and save, load
and predict a model. Each asserts with real numbers and fails loudly."""

import fcntl
import os
import shutil

import keras
import numpy as np


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def assert_all_close(a, b, atol=1e-6):
    """Every leaf of two nested outputs (dicts, lists, tensors) agrees."""
    flat_a, flat_b = keras.tree.flatten(a), keras.tree.flatten(b)
    assert len(flat_a) == len(flat_b), (len(flat_a), len(flat_b))
    for x, y in zip(flat_a, flat_b):
        np.testing.assert_allclose(_numpy(x), _numpy(y), atol=atol)


def run_layer_round_trip(layer, *inputs):
    """Calls `layer`, rebuilds it from its config with the same weights and
    checks the clone computes the same; checks the class is registered for
    safe-mode loading by name. Returns the layer's output."""
    out = layer(*inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(*inputs)
    clone.set_weights(layer.get_weights())
    assert_all_close(out, clone(*inputs))
    name = keras.saving.get_registered_name(layer.__class__)
    assert name.startswith("keras_amb>"), name
    assert keras.saving.get_registered_object(name) is layer.__class__
    return out


def saved_model_round_trip(model, x, path, atol=1e-6):
    """Saves `model` to `path` (a `.keras` file), loads it in safe mode and
    checks it has the same config and predicts the same on `x`. Returns the
    loaded model and its predictions."""
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    expected, got = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    assert_all_close(expected, got, atol=atol)
    return loaded, got


# `model.compile(..., **EAGERLY)`: the training step run eagerly. Which
# weights a step moves, what it does to batch-norm statistics, how it weights
# the losses: that is the same `train_step` code, traced and compiled or not
# (nothing in keras_amb branches on tracing). Tracing and compiling the tiny
# model's two-update step costs 4-7 s per model under TensorFlow and JAX, and
# these tests each build a model or several; run eagerly, a batch takes about
# a second once JAX has compiled each operation (benchmarks/results/
# cpu_2core_eager_unit_tests.md). The compiled step, the path `keras-amb train`
# takes, stays under test in test_abn_step_changes_every_weight,
# test_both_optimizers_advance_and_survive_save_and_load,
# test_attention_only_train_step_runs_and_saves and
# test_feature_statistics_are_logged, and in every training through the
# command line. KERAS_AMB_TEST_COMPILED_STEPS=1 runs them compiled too (on
# a GPU, say, to check what XLA makes of them).
EAGERLY = ({} if os.environ.get("KERAS_AMB_TEST_COMPILED_STEPS") == "1"
           else {"run_eagerly": True, "jit_compile": False})


def trained_once(key, train, into):
    """A training whose result does not depend on the backend under test
    (one that always trains under TensorFlow, say), done once for all the
    suites of one `tests/run_backends.sh` and copied to `into`.

    `train(folder)` trains into `folder`. The script gives its suites one
    shared folder (KERAS_AMB_TEST_SHARED): the first suite to need `key`
    trains it there, holding a lock, and the others wait and copy it.
    Without the variable (pytest on its own), `train(into)` runs here.
    Returns `into`.
    """
    shared = os.environ.get("KERAS_AMB_TEST_SHARED")
    if not shared:
        train(into)
        return into
    os.makedirs(shared, exist_ok=True)
    done = os.path.join(shared, key)
    with open(done + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isdir(done):
            partial = done + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            train(partial)
            os.rename(partial, done)
    shutil.copytree(done, into)
    return into
