"""Shared checks for keras-amb's layers and models, in the manner of
keras-hub's `TestCase` (`TestCase.run_layer_test`, `run_model_saving_test`,
applied to every registered layer and model in test_testcase.py): run a
layer eagerly and symbolically, check its output spec, weights, config and
dtype policies, and save, load and predict a model. Each asserts with real
numbers and fails loudly."""

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


class TestCase:
    """The checks every keras-amb layer and model gets, in the manner of
    keras-hub's `TestCase`: `run_layer_test` and `run_model_saving_test`.
    Test classes derive from it (it has no tests of its own)."""

    def run_layer_test(self, cls, init_kwargs, input_data, expected_output_shape,
                       expected_num_trainable_weights=None,
                       expected_num_non_trainable_weights=None,
                       dtype_policies=("float32", "mixed_float16", "mixed_bfloat16"),
                       batched=True):
        """Builds `cls(**init_kwargs)` and checks, with real values:

        - its config survives a JSON round trip (`from_config` rebuilds an
          identical config) and its class is registered for safe loading;
        - an eager call on `input_data` (an array or a tuple of them) and a
          symbolic call on `keras.KerasTensor`s of the same shapes give
          outputs of `expected_output_shape` (a shape, or a dict of them),
          and `compute_output_spec` agrees (with `batched=False`, the
          shapes are whole: an output that does not follow the batch);
        - its weight counts;
        - a clone from the config with the same weights computes the same;
        - under each dtype policy it builds, computes in the policy's compute
          dtype and keeps its variables in the variable dtype.
        """
        import json

        inputs = input_data if isinstance(input_data, tuple) else (input_data,)
        layer = cls(**init_kwargs)
        config = json.loads(json.dumps(layer.get_config()))
        assert cls.from_config(config).get_config() == layer.get_config()
        name = keras.saving.get_registered_name(cls)
        assert name.startswith("keras_amb>") and keras.saving.get_registered_object(name) is cls
        out = layer(*inputs)
        first = inputs[0].shape[0] if batched else ()
        self._check_shapes(out, expected_output_shape, batch=first)
        symbolic = [keras.KerasTensor((None,) + tuple(x.shape[1:]), dtype="float32")
                    for x in inputs]
        spec_batch = None if batched else ()
        self._check_shapes(layer(*symbolic), expected_output_shape, batch=spec_batch)
        self._check_shapes(layer.compute_output_spec(*symbolic), expected_output_shape,
                           batch=spec_batch)
        if expected_num_trainable_weights is not None:
            assert len(layer.trainable_weights) == expected_num_trainable_weights, (
                len(layer.trainable_weights))
        if expected_num_non_trainable_weights is not None:
            assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, (
                len(layer.non_trainable_weights))
        clone = cls.from_config(config)
        clone(*inputs)
        clone.set_weights(layer.get_weights())
        assert_all_close(out, clone(*inputs), atol=1e-5)
        for policy in dtype_policies:
            typed = cls(**init_kwargs, dtype=policy)
            result = typed(*inputs)
            compute = keras.mixed_precision.DTypePolicy(policy).compute_dtype
            for leaf in keras.tree.flatten(result):
                if "float" in str(leaf.dtype):
                    assert keras.backend.standardize_dtype(leaf.dtype) in (compute, "float32"), (
                        policy, leaf.dtype)
            for variable in typed.weights:
                assert variable.dtype == "float32", (policy, variable.path, variable.dtype)
        return out

    @staticmethod
    def _check_shapes(out, expected, batch):
        """`batch`: the leading dimension expected, or `()` for none."""
        lead = batch if batch == () else (batch,)
        if isinstance(expected, dict):
            assert set(out) >= set(expected), (sorted(out), sorted(expected))
            for key, shape in expected.items():
                assert tuple(out[key].shape) == lead + tuple(shape), (key, out[key].shape)
        else:
            assert tuple(out.shape) == lead + tuple(expected), out.shape

    def run_model_saving_test(self, model, x, path, atol=1e-5):
        """`saved_model_round_trip`: saved, loaded in safe mode, same config
        and same predictions."""
        return saved_model_round_trip(model, x, path, atol=atol)


def tiny_model_file(folder, class_names=("wren", "finch", "crow", "jay"), image_size=32,
                    **kwargs):
    """A tiny untrained `AttentionMiningNetwork` (seeded) saved as
    `folder/tiny.keras`, for tests of files and commands rather than of
    learning; `kwargs` go to the constructor. Returns the path."""
    from keras_amb import AttentionMiningNetwork

    path = os.path.join(os.fspath(folder), "tiny.keras")
    keras.utils.set_random_seed(0)
    model = AttentionMiningNetwork(num_classes=len(class_names), backbone="resnet_tiny",
                                   image_size=image_size, class_names=list(class_names),
                                   **kwargs)
    model(np.zeros((1, image_size, image_size, 3), np.float32))
    model.save(path)
    return path
