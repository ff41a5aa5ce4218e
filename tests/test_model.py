import json

import keras
import numpy as np
import pytest

from keras_amb import AttentionBranchNetwork
from keras_amb import AttentionMiningNetwork
from keras_amb import losses
from keras_amb.models.attention_branch_network import NonFiniteLossError
from tests.conftest import BACKEND
from tests.conftest import run_python

SIZE = 32


def _batch(n=8, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    y = (np.arange(n) % num_classes).astype("int32")
    return x, y


def _model(cls=AttentionMiningNetwork, **kwargs):
    kwargs.setdefault("num_classes", 4)
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


def test_argument_checks_quote_the_value():
    with pytest.raises(ValueError, match="mining=False"):
        _model(AttentionBranchNetwork, complement_objective=True)
    with pytest.raises(ValueError, match="-1.0"):
        _model(mining_weight=-1.0)
    with pytest.raises(ValueError, match="'resnet99'"):
        AttentionBranchNetwork(num_classes=3, backbone="resnet99")


def test_abn_step_changes_every_weight():
    model = _model(AttentionBranchNetwork)
    model.compile(keras.optimizers.SGD(0.1))
    before = _values(model.trainable_variables)
    x, y = _batch()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert all(_changed(before, _values(model.trainable_variables)))


def _paths(model, indices):
    return [model.trainable_variables[i].path for i in indices]


def test_complement_step_changes_only_the_weights_feeding_the_amb():
    model = _model()
    # Main optimizer frozen: only COT's step B can move weights.
    model.compile(keras.optimizers.SGD(0.0), complement_optimizer=keras.optimizers.SGD(0.1))
    before = _values(model.trainable_variables)
    x, y = _batch()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    changed = _changed(before, _values(model.trainable_variables))
    frozen = set(model.center_variable_indices) | (
        set(range(len(changed))) - set(model.complement_variable_indices)
    )
    assert frozen, "centres and attention logits conv must be excluded"
    for i, flag in enumerate(changed):
        path = model.trainable_variables[i].path
        if i in frozen:
            assert not flag, f"{path} must not change in the complement step"
    # Feature extractor, attention map and the (shared) perception branch move.
    for name in ("conv1_conv", "attention_map_conv", "predictions"):
        moved = [c for c, v in zip(changed, model.trainable_variables) if name in v.path]
        assert moved and all(moved), name


def test_main_step_moves_the_class_centres():
    model = _model()
    model.compile(keras.optimizers.SGD(0.1), complement_optimizer=keras.optimizers.SGD(0.0))
    before = _values(model.trainable_variables)
    model.fit(*_batch(), batch_size=8, epochs=1, verbose=0)
    changed = _changed(before, _values(model.trainable_variables))
    assert model.center_variable_indices
    assert all(changed[i] for i in model.center_variable_indices)


def _amb_complement_entropy(model, x, y):
    out = model(x, training=True, mode="step_b")
    return float(losses.complement_entropy(y, out["mining_logits"], zero_true_class=True))


def test_cot_step_raises_the_amb_complement_entropy():
    model = _model()
    model.compile(keras.optimizers.SGD(0.0), complement_optimizer=keras.optimizers.SGD(0.05))
    x, y = _batch()
    before = _amb_complement_entropy(model, x, y)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    after = _amb_complement_entropy(model, x, y)
    # COT minimizes sum q log q (<= 0): the entropy of the AMB output rises.
    assert after < before - 1e-4, (before, after)


def test_both_optimizers_advance_and_survive_save_and_load(tmp_path):
    model = _model()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9))
    x, y = _batch(16)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    main, comp = model.main_optimizer, model.complement_optimizer
    assert int(keras.ops.convert_to_numpy(main.iterations)) == 4
    assert int(keras.ops.convert_to_numpy(comp.iterations)) == 4
    momenta = [v for v in comp.variables if "momentum" in v.path]
    assert any(np.abs(keras.ops.convert_to_numpy(v)).sum() > 0 for v in momenta)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-7
        )
    assert int(keras.ops.convert_to_numpy(loaded.complement_optimizer.iterations)) == 4


def test_save_and_load_round_trip_predictions(tmp_path):
    model = _model()
    model.compile(keras.optimizers.SGD(0.01))
    x, y = _batch()
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, AttentionMiningNetwork)
    assert loaded.get_config() == model.get_config()
    a, b = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6)


def test_model_saved_here_loads_under_the_other_backends(tmp_path):
    model = _model(AttentionBranchNetwork)
    model.compile(keras.optimizers.SGD(0.01))
    x, y = _batch()
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    model.save(path)
    expected = model.predict(x, verbose=0)
    code = (
        "import json, sys, numpy as np, keras, keras_amb\n"
        f"m = keras.saving.load_model({path!r}, safe_mode=True)\n"
        f"out = m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)\n"
        "print(json.dumps({k: np.asarray(v).tolist() for k, v in out.items()}))\n"
    )
    for other in {"tensorflow", "jax", "torch"} - {BACKEND}:
        result = run_python(code, backend=other)
        assert result.returncode == 0, result.stderr[-2000:]
        got = json.loads(result.stdout.strip().splitlines()[-1])
        for key in ("probabilities", "attention"):
            diff = np.abs(np.asarray(got[key]) - expected[key]).max()
            assert diff < 1e-4, (other, key, diff)


def test_proposed_model_initialised_from_abn_has_its_attention():
    abn = _model(AttentionBranchNetwork)
    abn.compile(keras.optimizers.SGD(0.05))
    x, y = _batch()
    abn.fit(x, y, epochs=1, verbose=0)
    model = _model().transfer_weights_from(abn)
    np.testing.assert_allclose(
        abn.predict(x, verbose=0)["attention"], model.predict(x, verbose=0)["attention"],
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="num_classes=4"):
        _model(num_classes=5).transfer_weights_from(abn)


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
    from keras_amb.callbacks import StopOnNonFinite

    model = _model(AttentionBranchNetwork)
    model.compile(keras.optimizers.SGD(1e30))
    x, y = _batch(16)
    x[0] = np.inf
    with pytest.raises(NonFiniteLossError, match=r"(att|per)?_?loss became (nan|inf)"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[StopOnNonFinite("abn")])
