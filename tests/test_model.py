import functools
import io
import os
import zipfile

import h5py
import keras
import numpy as np
import pytest

from keras_amb import AttentionBranchNetwork
from keras_amb import AttentionMiningNetwork
from keras_amb import arguments
from keras_amb import losses
from keras_amb import optimizers
from keras_amb.errors import NonFiniteLossError
from tests.conftest import BACKEND
from tests.helpers import EAGERLY
from tests.helpers import saved_model_round_trip

SIZE = 32


def _batch(n=8, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    y = (np.arange(n) % num_classes).astype("int32")
    return x, y


def _model(cls=AttentionMiningNetwork, **kwargs):
    """A tiny model with the paper's objective (these tests check section
    3.5's step as the paper writes it; the default objective's map terms
    have theirs in test_map_terms.py), unless `kwargs` say otherwise."""
    kwargs.setdefault("num_classes", 4)
    if cls is AttentionMiningNetwork:
        kwargs = {**arguments.PAPER_OBJECTIVE, **kwargs}
    return cls(backbone="resnet_tiny", image_size=SIZE, **kwargs)


def _values(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def _changed(before, after):
    return [not np.allclose(b, a, atol=0, rtol=0) for b, a in zip(before, after)]


def test_predict_returns_perception_and_attention():
    model = _model(AttentionBranchNetwork)
    x, _ = _batch(3)
    out = model.predict(x, verbose=0)
    assert set(out) >= {"probabilities", "attention", "attention_probabilities", "logits"}
    assert out["probabilities"].shape == (3, 4)
    assert out["attention"].shape == (3, SIZE // 4, SIZE // 4)
    assert 0 < out["attention"].min() and out["attention"].max() < 1
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["attention_probabilities"].sum(-1), 1.0, atol=1e-5)



def test_a_loaded_model_predicts_a_batch_without_running_twice(tmp_path):
    """Every layer of a built or loaded model is built: while one is not,
    JAX's `predict_on_batch` runs the whole model eagerly before each batch
    (the mining mask, which inference never calls, was not, in either model:
    a JAX `evaluate` took 43 s instead of 28)."""
    _model(AttentionBranchNetwork).save(tmp_path / "model.keras")
    model = keras.saving.load_model(tmp_path / "model.keras")
    x, _ = _batch(3)
    runs = []
    forward_features = model.forward_features
    model.forward_features = lambda *args, **kwargs: (runs.append(1),
                                                      forward_features(*args, **kwargs))[1]
    first = model.predict_on_batch(x)
    traced = len(runs)
    again = model.predict_on_batch(x)
    # Compiled backends trace once; PyTorch runs each batch once.
    assert len(runs) - traced == (1 if BACKEND == "torch" else 0), (traced, len(runs))
    np.testing.assert_allclose(again["probabilities"], first["probabilities"], atol=1e-6)


def test_entry_points_compose_figure_1():
    """call, forward_with_cams and each step's forward pass read the same
    graph: the same predictions in inference mode, and what each step's loss
    needs, no more."""
    model = _model()
    x, _ = _batch(3)
    seen = {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}
    assert sorted(seen) == ["attention", "attention_logits", "attention_probabilities",
                            "logits", "probabilities"]
    cams = model.forward_with_cams(x)
    evaluated = model.forward_step(x, "eval", training=False)
    for key, value in seen.items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(cams[key]), value, atol=1e-5)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(evaluated[key]), value, atol=1e-5)
    assert cams["class_activation_maps"].shape == (3, SIZE // 8, SIZE // 8, 4)
    # With COT, L_am is not in eq. 5: the main step does not run the AMB,
    # the complement step runs only the attention branch and the AMB.
    assert "amb_logits" not in model.forward_step(x, "main", training=False)
    assert sorted(model.forward_step(x, "complement", training=False)) == [
        "amb_logits", "attention", "attention_logits", "attention_probabilities"]
    assert {"amb_logits", "perception_features", "attention_features", "perception_centers",
            "attention_centers"} <= set(evaluated)
    with pytest.raises(ValueError, match="step='predict'"):
        model.forward_step(x, "predict")

def test_argument_checks_quote_the_value():
    with pytest.raises(ValueError, match="amb=False"):
        _model(AttentionBranchNetwork, cot=True)
    with pytest.raises(ValueError, match="amb_weight=-1.0"):
        _model(amb_weight=-1.0)
    with pytest.raises(ValueError, match="'resnet99'"):
        AttentionBranchNetwork(num_classes=3, backbone="resnet99")
    with pytest.raises(ValueError, match="mask_threshold=1.5"):
        _model(mask_threshold=1.5)
    with pytest.raises(ValueError, match="3 names"):
        _model(class_names=["a", "b", "c"])


def test_abn_step_changes_every_weight():
    model = _model(AttentionBranchNetwork)
    model.compile(keras.optimizers.SGD(0.1))
    before = _values(model.trainable_variables)
    model.fit(*_batch(), batch_size=8, epochs=1, verbose=0)
    assert all(_changed(before, _values(model.trainable_variables)))


# The weights COT's step must leave alone, named by the model's structure
# (not taken from the model's own `complement_variables`).
NOT_FEEDING_THE_AMB = ("perception_centers", "attention_centers", "attention_logits_conv")


def test_complement_step_changes_only_the_weights_feeding_the_amb():
    model = _model()
    # Main optimizer frozen: only COT's step can move weights.
    model.compile(keras.optimizers.SGD(0.0),
                  complement_optimizer=keras.optimizers.SGD(0.1, momentum=0.9), **EAGERLY)
    before = _values(model.trainable_variables)
    model.fit(*_batch(), batch_size=8, epochs=1, verbose=0)
    changed = dict(zip([v.path for v in model.trainable_variables],
                       _changed(before, _values(model.trainable_variables))))
    frozen = [p for p in changed if any(name in p for name in NOT_FEEDING_THE_AMB)]
    assert len(frozen) == 3, frozen
    for path in frozen:
        assert not changed[path], f"{path} must not change in the complement step"
    moved = [p for p in changed if p not in frozen]
    assert all(changed[p] for p in moved), [p for p in moved if not changed[p]]
    # The complement optimizer keeps state (a momentum) for those weights alone.
    momenta = [v for v in model.optimizer.complement_optimizer.variables if "momentum" in v.path]
    assert len(momenta) == len(moved), (len(momenta), len(moved))
    assert len(model.complement_variables) == len(moved)


def test_main_step_moves_the_class_centers():
    model = _model()
    model.compile(keras.optimizers.SGD(0.1), complement_optimizer=keras.optimizers.SGD(0.0),
                  **EAGERLY)
    before = _values(model.center_variables)
    model.fit(*_batch(), batch_size=8, epochs=1, verbose=0)
    assert len(model.center_variables) == 2
    assert all(_changed(before, _values(model.center_variables)))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_center_lr_multiplier_scales_the_centers_update_with_any_optimizer(optimizer):
    moves = {}
    for multiplier in (1.0, 3.0):
        keras.utils.set_random_seed(1)
        model = _model(cot=False, center_lr_multiplier=multiplier)
        opt = (keras.optimizers.SGD(0.01) if optimizer == "sgd"
               else keras.optimizers.Adam(0.01))
        model.compile(opt, **EAGERLY)
        centers = _values(model.center_variables)
        others = _values(model.feature_extractor.trainable_variables)
        model.fit(*_batch(), batch_size=8, epochs=1, verbose=0)
        moves[multiplier] = (
            [a - b for a, b in zip(_values(model.center_variables), centers)],
            [a - b for a, b in zip(_values(model.feature_extractor.trainable_variables), others)],
        )
    for base, scaled in zip(moves[1.0][0], moves[3.0][0]):
        np.testing.assert_allclose(scaled, 3.0 * base, rtol=1e-3, atol=1e-7)
    # The other weights move alike (a leaked multiplier would triple their
    # steps, up to 0.01). Two compiled programs may order their sums apart,
    # and Adam's m / sqrt(v) magnifies that where a gradient is near its
    # epsilon (seen: 3e-5 apart under JAX): 1e-4 is 1% of a step.
    for base, scaled in zip(moves[1.0][1], moves[3.0][1]):
        np.testing.assert_allclose(scaled, base, rtol=1e-4, atol=1e-4)


def _amb_complement_entropy(model, x, y):
    out = model.forward_step(x, "complement", training=True)
    return float(losses.complement_entropy(y, out["amb_logits"], zero_true_class=True))


def test_cot_step_raises_the_amb_complement_entropy():
    model = _model()
    model.compile(keras.optimizers.SGD(0.0), complement_optimizer=keras.optimizers.SGD(0.05),
                  **EAGERLY)
    x, y = _batch()
    before = _amb_complement_entropy(model, x, y)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    after = _amb_complement_entropy(model, x, y)
    # COT minimizes sum q log q (<= 0): the entropy of the AMB output rises.
    assert after < before - 1e-4, (before, after)


def _moving_statistics(model):
    return {v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v).copy()
            for v in model.non_trainable_variables if "moving" in v.path}


@functools.lru_cache(maxsize=None)  # the reference serves both parametrisations
def _statistics_after_one_frozen_step(**kwargs):
    keras.utils.set_random_seed(2)
    model = _model(**kwargs)
    # Zero learning rates: the step changes no weight, only BN statistics.
    model.compile(keras.optimizers.SGD(0.0), complement_optimizer=keras.optimizers.SGD(0.0),
                  **EAGERLY)
    model.fit(*_batch(16), batch_size=16, epochs=1, verbose=0)
    return _moving_statistics(model)


@pytest.mark.parametrize("naive", [False, True])
def test_mining_pass_and_complement_step_leave_bn_statistics_alone(naive):
    # Reference: the main step's unmasked pass alone (no AMB, no COT).
    reference = _statistics_after_one_frozen_step(amb=False, pc=False, cot=False)
    amb = _statistics_after_one_frozen_step(
        amb=True, pc=False, cot=False, naive_bn_statistics=naive)
    cot = _statistics_after_one_frozen_step(
        amb=True, pc=False, cot=True, naive_bn_statistics=naive)
    perception = [p for p in reference if "perception_branch" in p]
    extractor = [p for p in reference if "perception_branch" not in p]
    assert perception and extractor
    for path in reference:
        if naive:
            continue
        np.testing.assert_allclose(amb[path], reference[path], atol=1e-6, err_msg=path)
        np.testing.assert_allclose(cot[path], reference[path], atol=1e-6, err_msg=path)
    if naive:
        # The naive port moves them: the AMB pass updates the perception
        # branch again, COT's forward pass updates every layer again.
        assert any(not np.allclose(amb[p], reference[p]) for p in perception)
        assert all(np.allclose(amb[p], reference[p], atol=1e-6) for p in extractor)
        assert any(not np.allclose(cot[p], reference[p]) for p in extractor)


def _weight_change_in_one_epoch(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = _model(AttentionBranchNetwork)
        model.compile(keras.optimizers.SGD(0.05))
        before = _values(model.trainable_variables)
        x, y = _batch(64)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        return sum(float(np.abs(a - b).sum())
                   for a, b in zip(_values(model.trainable_variables), before))
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow  # an epoch of training under each policy
def test_mixed_float16_trains_as_far_as_float32():
    if BACKEND == "torch":
        pytest.skip("PyTorch has no float16 convolution backward on the CPU")
    full = _weight_change_in_one_epoch("float32")
    half = _weight_change_in_one_epoch("mixed_float16")
    # Before the loss was scaled on JAX, the float16 change was 2^15 smaller.
    assert full / 2 < half < full * 2, (full, half)


def test_both_optimizers_advance_and_survive_save_and_load(tmp_path):
    model = _model()
    model.compile(optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-4))
    x, y = _batch(16)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    main = optimizers.main_optimizer(model.optimizer)
    comp = optimizers.complement_optimizer(model.optimizer)
    assert int(keras.ops.convert_to_numpy(main.iterations)) == 4
    assert int(keras.ops.convert_to_numpy(comp.iterations)) == 4
    momenta = [v for v in comp.variables if "momentum" in v.path]
    assert len(momenta) == len(model.complement_variables)
    assert any(np.abs(keras.ops.convert_to_numpy(v)).sum() > 0 for v in momenta)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-7
        )
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.complement_optimizer.iterations)) == 4
    assert loaded.optimizer.optimizer.coupled_weight_decay == 1e-4


def test_the_model_file_carries_names_and_preprocessing(tmp_path):
    names = ["wren", "finch", "crow", "jay"]
    model = _model(class_names=names, resize_ratio=1.25)
    model.compile(keras.optimizers.SGD(0.01), **EAGERLY)
    x, y = _batch()
    model.fit(x, y, epochs=1, verbose=0)
    loaded, b = saved_model_round_trip(model, x, str(tmp_path / "model.keras"))
    assert isinstance(loaded, AttentionMiningNetwork)
    assert loaded.class_names == names and loaded.resize_ratio == 1.25
    # Compiled as before saving; a model saved eager is not given XLA back.
    assert loaded.run_eagerly == model.run_eagerly
    assert not (loaded.run_eagerly and loaded.jit_compile)
    top = loaded.decode_predictions(b["probabilities"], top_k=2)
    assert len(top) == len(x) and len(top[0]) == 2
    assert top[0][0][0] == names[int(np.argmax(b["probabilities"][0]))]
    assert top[0][0][1] == pytest.approx(float(b["probabilities"][0].max()), abs=1e-6)
    assert top[0][0][1] >= top[0][1][1]
    assert _model().get_class_names() == ["class_0", "class_1", "class_2", "class_3"]


def test_files_of_the_previous_release_still_load():
    config = _model(AttentionBranchNetwork).get_config()
    for new, old in (("amb", "mining"), ("pc", "prototype_conformity"),
                     ("cot", "complement_objective"), ("amb_weight", "mining_weight")):
        config[old] = config.pop(new)
    for key in ("class_names", "resize_ratio", "naive_bn_statistics"):
        config.pop(key)
    model = AttentionBranchNetwork.from_config(config)
    assert model.class_names is None and model.resize_ratio == 1.0 and not model.amb


# Files saved under each backend by tests/fixtures/make_backend_fixtures.py
# (its docstring says how and when), loaded here under every backend.
BACKEND_FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                                "backends")
SAVED_UNDER = ("tensorflow", "jax", "torch")


def _weights_layout(path):
    """What another backend must find in a `.keras` file's `model.weights.h5`:
    each weight's path, shape and dtype."""
    with zipfile.ZipFile(path) as archive:
        weights = io.BytesIO(archive.read("model.weights.h5"))
    layout = []

    def add(name, item):
        if isinstance(item, h5py.Dataset):
            # The optimizer's step counter is int64 under TensorFlow, int32
            # under JAX and torch; every backend loads either.
            dtype = "int" if name.startswith("optimizer/") and item.dtype.kind == "i" else (
                str(item.dtype))
            layout.append((name, item.shape, dtype))

    with h5py.File(weights, "r") as h5:
        h5.visititems(add)
    return sorted(layout)


@pytest.mark.slow
@pytest.mark.parametrize("saved_under", SAVED_UNDER)
def test_a_model_saved_under_any_backend_loads_and_predicts_the_same(saved_under):
    with np.load(os.path.join(BACKEND_FIXTURES, f"expected-{saved_under}.npz")) as data:
        expected = {key: data[key] for key in data.files}
    model = keras.saving.load_model(
        os.path.join(BACKEND_FIXTURES, f"abn-{saved_under}.keras"), safe_mode=True)
    got = model.predict(expected["images"].astype("float32"), verbose=0)
    for key in ("probabilities", "attention"):
        # Other backends sum in another order.
        np.testing.assert_allclose(got[key], expected[key], atol=1e-4, err_msg=key)
    # A trained model: its answers differ between images.
    assert np.ptp(expected["probabilities"][:, 0]) > 1e-3


@pytest.mark.slow
def test_a_model_saved_here_is_laid_out_as_every_backend_loads_it(tmp_path):
    # The files above load under every backend; one saved by today's code
    # under this backend holds the same weights under the same names, so it
    # loads there too (without starting a process per backend). Should the
    # model gain or rename weights on purpose, the files above must still
    # load; write a new set beside them for this check, never over them.
    model = _model(AttentionBranchNetwork)
    model.compile(keras.optimizers.SGD(0.01))
    model.fit(*_batch(), epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    layout = _weights_layout(path)
    assert len(layout) > 50 and any(name.startswith("optimizer/") for name, _, _ in layout)
    for saved_under in SAVED_UNDER:
        their_layout = _weights_layout(os.path.join(BACKEND_FIXTURES, f"abn-{saved_under}.keras"))
        assert layout == their_layout, saved_under
    assert type(keras.saving.load_model(path, safe_mode=True)) is AttentionBranchNetwork


def test_proposed_model_initialised_from_abn_has_its_attention():
    abn = _model(AttentionBranchNetwork)
    abn.compile(keras.optimizers.SGD(0.05), **EAGERLY)
    x, y = _batch()
    abn.fit(x, y, epochs=1, verbose=0)
    model = _model().transfer_weights_from(abn)
    np.testing.assert_allclose(
        abn.predict(x, verbose=0)["attention"], model.predict(x, verbose=0)["attention"],
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="num_classes=4"):
        _model(num_classes=5).transfer_weights_from(abn)


def test_keras_callbacks_infer_the_direction_of_every_logged_metric():
    model = _model()
    model.compile(keras.optimizers.SGD(0.01), **EAGERLY)
    callbacks = {
        name: keras.callbacks.EarlyStopping(monitor=name, patience=10)
        for name in ("val_top1", "val_top5", "val_att_top1", "val_loss", "val_per_loss",
                     "val_cot_loss", "top1", "pc_loss")
    }
    x, y = _batch()
    model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y),
              callbacks=list(callbacks.values()))
    for name, callback in callbacks.items():
        expected = keras.ops.greater if "top" in name else keras.ops.less
        assert callback.monitor_op is expected, name


def test_compile_refuses_losses_and_metrics_it_would_ignore():
    model = _model()
    with pytest.raises(ValueError, match="loss='mse'"):
        model.compile(keras.optimizers.SGD(0.01), loss="mse")
    with pytest.raises(ValueError, match=r"metrics=\['accuracy'\]"):
        model.compile(keras.optimizers.SGD(0.01), metrics=["accuracy"])


def _per_example_cross_entropy(model, x, y, training=False):
    logits = np.asarray(keras.ops.convert_to_numpy(
        model(x, training=training)["logits"]), np.float64)
    logits -= logits.max(-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -log_p[np.arange(len(y)), y]


def test_sample_weight_and_class_weight_weight_the_losses():
    model = _model(cot=False)
    model.compile(keras.optimizers.SGD(0.0), **EAGERLY)
    x, y = _batch(8)
    ce = _per_example_cross_entropy(model, x, y)
    weights = np.linspace(0.0, 2.0, 8).astype("float32")
    result = model.evaluate(x, y, sample_weight=weights, batch_size=8, verbose=0,
                            return_dict=True)
    assert result["per_loss"] == pytest.approx(float(np.mean(weights * ce)), rel=1e-4)
    # class_weight reaches the losses as per-example weights (fit, lr 0,
    # one batch: batch normalisation uses the batch's statistics).
    ce = _per_example_cross_entropy(model, x, y, training=True)
    history = model.fit(x, y, class_weight={0: 1.0, 1: 0.0, 2: 0.0, 3: 0.0},
                        batch_size=8, epochs=1, verbose=0, shuffle=False)
    expected = float(np.mean(np.where(y == 0, ce, 0.0)))
    assert history.history["per_loss"][0] == pytest.approx(expected, rel=1e-4)


def test_jit_compile_auto_picks_the_fast_path():
    model = _model()
    model.compile(keras.optimizers.SGD(0.01), jit_compile="auto")
    expected = {"jax": True, "torch": False}.get(BACKEND)
    if BACKEND == "tensorflow":  # XLA only with a GPU (slower on a CPU)
        import tensorflow as tf

        expected = bool(tf.config.list_physical_devices("GPU"))
    assert model.jit_compile == expected
    model.compile(keras.optimizers.SGD(0.01), jit_compile=False)
    assert model.jit_compile is False


def _colour_task(n, seed):
    """4 classes: the colour of a small square at a random place."""
    rng = np.random.default_rng(seed)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], "float32")
    x = np.full((n, SIZE, SIZE, 3), 100.0, "float32") + rng.normal(0, 10, (n, SIZE, SIZE, 3))
    y = rng.integers(0, 4, n).astype("int32")
    for i in range(n):
        r, c = rng.integers(0, SIZE - 8, 2)
        x[i, r : r + 8, c : c + 8] = colours[y[i]]
    return x.astype("float32"), y


@pytest.mark.slow
def test_tiny_model_learns_a_tiny_task():
    x, y = _colour_task(256, 0)
    xt, yt = _colour_task(64, 1)
    model = _model(AttentionBranchNetwork)
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    untrained = _model(AttentionBranchNetwork)
    untrained.compile(keras.optimizers.Adam(3e-3))
    chance = untrained.evaluate(xt, yt, verbose=0, return_dict=True)
    result = model.evaluate(xt, yt, verbose=0, return_dict=True)
    assert result["top1"] >= 0.9, result
    assert result["att_top1"] >= 0.6, result  # chance: 0.25
    assert result["per_loss"] < chance["per_loss"]


def test_non_finite_loss_stops_training_naming_the_component():
    from keras_amb.app.callbacks import StopOnNonFinite

    model = _model(AttentionBranchNetwork)
    model.compile(keras.optimizers.SGD(1e30), **EAGERLY)
    x, y = _batch(24)
    # Batch 1's loss is finite; its step at lr 1e30 ruins the weights, so
    # batch 2's is not. Batches are checked one late (no wait for the step
    # in flight), at batch 3's end here, and the message names batch 2.
    with pytest.raises(NonFiniteLossError,
                       match=r"(att|per)_loss became (nan|inf) in stage 'abn', epoch 1, batch 2;"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                  callbacks=[StopOnNonFinite("abn")])


def test_forward_amb_is_the_perception_branch_on_the_masked_features():
    model = AttentionMiningNetwork(num_classes=3, backbone="resnet_tiny", image_size=32,
                                   pc=False, cot=False, hard_mask=True)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    features = model.forward_features(x)
    attention = model.attention_branch(features)["attention"]
    mask = keras.ops.cast(keras.ops.convert_to_numpy(attention) > 0.5, "float32")
    expected = model.perception_branch(features * (1 - mask))["logits"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.forward_amb(features, attention)),
                               keras.ops.convert_to_numpy(expected), atol=1e-5)
    outputs = model.forward_step(x, "eval", training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs["amb_logits"]),
                               keras.ops.convert_to_numpy(expected), atol=1e-5)
