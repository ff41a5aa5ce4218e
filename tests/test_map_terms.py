"""The map terms (#36): area, smoothness, normalisation and erasing, each
against a hand-computed value, and their place in eq. 5, on every backend."""

import keras
import numpy as np
import pytest

from keras_amb import AttentionBranchNetwork
from keras_amb import AttentionMiningNetwork
from keras_amb import arguments
from keras_amb import losses
from keras_amb.explain import evaluation
from keras_amb.explain import metrics
from keras_amb.models import gradients
from keras_amb.models.gradients import input_gradient
from keras_amb.model_file import describe
from tests.helpers import EAGERLY

SIZE = 32


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _batch(n=4, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    return x, (np.arange(n) % num_classes).astype("int32")


def _model(**kwargs):
    return AttentionMiningNetwork(num_classes=4, backbone="resnet_tiny", image_size=SIZE,
                                  **kwargs)


def test_area_loss_is_the_mean_of_the_map_without_a_target():
    a = np.array([[[0.2, 0.4], [0.6, 0.8]], [[0.0, 0.0], [0.0, 1.0]]], dtype="float32")
    assert float(losses.area_loss(a)) == pytest.approx((2.0 + 1.0) / 8, abs=1e-6)
    # Every position pushes the map down by the same 1 / (N h w).
    grad = _numpy(input_gradient(lambda m: losses.area_loss(m)[None], a))
    np.testing.assert_allclose(grad, np.full_like(a, 1 / 8), atol=1e-7)


def test_area_loss_with_a_target_is_the_extremal_perturbation_constraint():
    # Target 0.25 of 4 positions: reference 0, 0, 0, 1 against the sorted map.
    a = np.array([[[0.9, 0.1], [0.3, 0.2]]], dtype="float32")
    expected = (0.1 ** 2 + 0.2 ** 2 + 0.3 ** 2 + (0.9 - 1.0) ** 2) / 4
    assert float(losses.area_loss(a, target=0.25)) == pytest.approx(expected, abs=1e-6)
    # A map that is 1 on exactly a quarter and 0 elsewhere costs nothing,
    # wherever its quarter is.
    exact = np.array([[[0.0, 0.0], [1.0, 0.0]]], dtype="float32")
    assert float(losses.area_loss(exact, target=0.25)) == pytest.approx(0.0, abs=1e-7)
    # Gradient: 2 (sorted value - reference) / 4 at each value's own place.
    grad = _numpy(input_gradient(lambda m: losses.area_loss(m, 0.25)[None], a))
    np.testing.assert_allclose(grad, [[[2 * -0.1 / 4, 2 * 0.1 / 4], [2 * 0.3 / 4, 2 * 0.2 / 4]]],
                               atol=1e-6)
    with pytest.raises(ValueError, match="target=1.0"):
        losses.area_loss(a, target=1.0)


def test_smoothness_loss_is_the_mean_squared_neighbour_difference():
    a = np.array([[[0.0, 1.0, 1.0], [0.0, 0.0, 0.5]]], dtype="float32")
    across = ((1 - 0) ** 2 + 0 ** 2 + 0 ** 2 + 0.5 ** 2) / 4
    down = (0 ** 2 + 1 ** 2 + 0.5 ** 2) / 3
    assert float(losses.smoothness_loss(a)) == pytest.approx(across + down, abs=1e-6)
    assert float(losses.smoothness_loss(a[..., None])) == pytest.approx(across + down, abs=1e-6)
    assert float(losses.smoothness_loss(np.full((2, 3, 3), 0.7, "float32"))) == 0.0


def test_normalise_map_spans_zero_to_one_per_image():
    a = np.array([[[0.6, 0.7], [0.8, 0.7]], [[0.5, 0.5], [0.5, 0.5]]], dtype="float32")
    out = _numpy(losses.normalise_map(a))
    np.testing.assert_allclose(out[0], [[0.0, 0.5], [1.0, 0.5]], atol=1e-4)
    np.testing.assert_allclose(out[1], 0.0, atol=1e-6)  # a flat map has no ranking


def test_eq5_adds_each_map_term_with_its_weight():
    model = _model(area_weight=2.0, area_target=0.0, smoothness_weight=3.0, erasing_weight=0.5)
    x, y = _batch()
    loss, terms, parts, outputs = model.main_step_loss(x, y, training=False)
    attention = _numpy(outputs["attention"])
    assert float(parts["area_loss"]) == pytest.approx(attention.mean(), abs=1e-6)
    assert float(parts["smoothness_loss"]) == pytest.approx(
        float(losses.smoothness_loss(attention)), abs=1e-6)
    # Erasing: CE of the perception branch on F - T(A) F.
    features = model.forward_features(x)
    mask = model.mining_mask(outputs["attention"][..., None])
    erased = model.perception_branch(features - features * mask)["logits"]
    assert float(parts["erasing_loss"]) == pytest.approx(
        float(losses.cross_entropy(y, erased)), abs=1e-4)
    assert float(terms["area_loss"]) == pytest.approx(2.0 * float(parts["area_loss"]), rel=1e-6)
    assert float(terms["smoothness_loss"]) == pytest.approx(
        3.0 * float(parts["smoothness_loss"]), rel=1e-6)
    assert float(terms["erasing_loss"]) == pytest.approx(
        0.5 * float(parts["erasing_loss"]), rel=1e-6)
    assert float(loss) == pytest.approx(sum(float(v) for v in terms.values()), rel=1e-5)
    # Off (the paper's objective): no term, no tracker, eq. 5.
    plain = _model(**arguments.PAPER_OBJECTIVE)
    parts = plain.main_step_loss(x, y, training=False).parts
    assert not {"area_loss", "smoothness_loss", "erasing_loss"} & set(parts)
    assert "area_loss" not in plain.loss_trackers


def _term_gradients(model, x, y, name, variables):
    def alone():
        return model.main_step_loss(x, y, training=False).parts[name]

    return [_numpy(g) for g in gradients.variable_gradients(alone, variables)]


def test_erasing_sends_no_gradient_to_the_map():
    """The mask is held fixed: the erasing term trains the classifier on what
    the map left out and cannot move the map."""
    model = _model(pc=False, cot=False, amb=False, erasing_weight=1.0)
    x, y = _batch()
    to_map = _term_gradients(model, x, y, "erasing_loss", model.attention_branch.map_variables)
    assert all(np.all(g == 0) for g in to_map)
    to_classifier = _term_gradients(model, x, y, "erasing_loss",
                                    model.perception_branch.trainable_variables)
    assert sum(float(np.abs(g).sum()) for g in to_classifier) > 1e-3
    # Whereas L_am (the same pass, mask not fixed) reaches the map.
    mining = _model(pc=False, cot=False, amb_weight=1.0, **arguments.PAPER_OBJECTIVE)
    to_map = _term_gradients(mining, x, y, "amb_loss", mining.attention_branch.map_variables)
    assert sum(float(np.abs(g).sum()) for g in to_map) > 1e-6


@pytest.mark.parametrize("normalization", ["mask", "all"])
def test_map_normalization_decides_what_the_mask_and_the_mechanism_see(normalization):
    model = _model(pc=False, cot=False, hard_mask=True, map_normalization=normalization)
    x, _ = _batch()
    features = model.forward_features(x)
    raw = model.attention_branch(features)["attention"]
    scaled = _numpy(losses.normalise_map(raw))
    mask = keras.ops.convert_to_tensor((scaled > 0.5).astype("float32"))
    expected_amb = model.perception_branch(features * (1 - mask))["logits"]
    shown = _numpy(model(x)["attention"])
    if normalization == "all":
        np.testing.assert_allclose(shown, scaled[..., 0], atol=1e-5)
        assert shown.min() == pytest.approx(0.0, abs=1e-6)
    else:
        np.testing.assert_allclose(shown, _numpy(raw)[..., 0], atol=1e-6)
    np.testing.assert_allclose(
        _numpy(model.forward_amb(features, model._used_map(raw))),
        _numpy(expected_amb), atol=1e-4)


def test_map_terms_train_save_and_load(tmp_path):
    model = _model(area_weight=1.0, area_target=0.2, smoothness_weight=0.5,
                   erasing_weight=1.0, map_normalization="mask")
    model.compile(keras.optimizers.SGD(0.01), **EAGERLY)
    x, y = _batch(8)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    for name in ("area_loss", "smoothness_loss", "erasing_loss"):
        assert np.isfinite(history[name][-1]), name
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for key in ("area_weight", "area_target", "smoothness_weight", "erasing_weight",
                "map_normalization"):
        assert loaded.get_config()[key] == model.get_config()[key]
    np.testing.assert_allclose(_numpy(loaded(x[:2])["attention"]),
                               _numpy(model(x[:2])["attention"]), atol=1e-5)
    assert describe(model.get_config()) == (
        "AMB (attention only) + PC + COT + area 0.2 + smoothness + erasing + normalised map "
        "(mask), no bypass")


def test_area_term_pushes_the_map_down():
    """A step down the area term's gradient alone lowers the map's mean."""
    model = _model(pc=False, cot=False, amb=False, area_weight=1.0)
    x, y = _batch(8)
    variables = model.attention_branch.map_variables
    grads = _term_gradients(model, x, y, "area_loss", variables)
    start = float(_numpy(model(x)["attention"]).mean())
    for variable, grad in zip(variables, grads):
        variable.assign(_numpy(variable) - 0.5 * grad / max(np.abs(grad).max(), 1e-12))
    end = float(_numpy(model(x)["attention"]).mean())
    assert end < start - 0.01, (start, end)


def test_the_map_terms_are_bad_values_refused():
    with pytest.raises(ValueError, match="area_weight=-1"):
        _model(area_weight=-1)
    with pytest.raises(ValueError, match="map_normalization='minmax'"):
        _model(map_normalization="minmax")
    with pytest.raises(ValueError, match="area_target=1"):
        _model(area_target=1)


def test_abn_stage_ignores_the_map_terms():
    from keras_amb.app import config as amb_config
    from keras_amb.models.factory import build_model

    cfg = amb_config.resolve("synthetic", {"area_weight": 1.0, "erasing_weight": 1.0,
                                           "image_size": SIZE})
    abn = build_model(cfg.model, "abn", [f"c{i}" for i in range(4)], SIZE)
    assert isinstance(abn, AttentionBranchNetwork)
    assert abn.area_weight == 0.0 and abn.erasing_weight == 0.0


def test_map_statistics_on_min_max_normalised_maps():
    # A wash with texture: raw, all above 0.5; normalised, half of it.
    maps = np.array([[[0.90, 0.91], [0.92, 0.93]]], dtype="float32")
    stats = metrics.map_statistics(maps)
    assert float(stats["map_area_above_half"][0]) == 1.0
    assert float(stats["map_area_above_half_normalised"][0]) == 0.5
    # Normalised values 0, 1/3, 2/3, 1: entropy of (0, 1, 2, 3) / 6.
    p = np.array([1, 2, 3]) / 6
    expected = -(p * np.log(p)).sum() / np.log(4)
    assert float(stats["map_entropy_normalised"][0]) == pytest.approx(expected, abs=1e-3)
    assert float(stats["map_entropy"][0]) > 0.99


def test_matched_inversion_keeps_mean_and_spread_and_flips_the_ranking():
    a = np.array([[[0.2, 0.4], [0.6, 0.8]]], dtype="float32")
    inverted = evaluation._matched_inversion(a)
    np.testing.assert_allclose(inverted, [[[0.8, 0.6], [0.4, 0.2]]], atol=1e-6)
    # It is the reflection about the map's mean, 2 mean - A, clipped to [0, 1].
    b = np.array([[[0.6, 0.65], [0.7, 0.8]]], dtype="float32")
    matched = evaluation._matched_inversion(b)
    np.testing.assert_allclose(matched, 2 * b.mean() - b, atol=1e-5)
    assert matched.mean() == pytest.approx(b.mean(), abs=1e-5)
    assert matched.std() == pytest.approx(b.std(), abs=1e-5)
    assert np.argmax(matched) == np.argmin(b)


def test_map_shape_warning_names_a_wash_and_a_collapse():
    from keras_amb.app.callbacks import MapShapeWarning

    model = _model()
    x, y = _batch()
    lines = []
    callback = MapShapeWarning((x, y), lines.append)
    callback.set_model(model)
    beta = model.attention_branch.map_bn.beta
    for value, word in ((30.0, "covers nearly everything"), (-30.0, "has collapsed")):
        beta.assign(np.full(beta.shape, value, "float32"))
        logs = {}
        callback.on_epoch_end(0, logs)
        assert logs["map_area_above_half"] == (1.0 if value > 0 else 0.0)
        assert word in lines[-1] and "--area-weight" in lines[-1]
    # Each is said once.
    callback.on_epoch_end(1, {})
    assert len(lines) == 2
    beta.assign(np.zeros(beta.shape, "float32"))
    logs = {}
    callback.on_epoch_end(2, logs)
    assert 0.0 < logs["map_mean"] < 1.0 and len(lines) == 2


def test_one_default_per_model_argument_whatever_the_entry_point():
    """#37: the model, the config's model section and the model-file reader
    take their defaults from `arguments`; a bundled config states what it
    tunes. Files saved before an argument existed load with the value they
    were trained with."""
    from keras_amb import model_file
    from keras_amb.models import AttentionBranchNetwork
    from keras_amb.app.run_config import ModelConfig

    mining, abn = _model(), AttentionBranchNetwork(num_classes=4, backbone="resnet_tiny",
                                                    image_size=SIZE)
    config = ModelConfig()
    for key, value in arguments.MINING_DEFAULTS.items():
        if key not in ("backbone", "image_size"):  # given to _model
            assert mining.get_config()[key] == value, key
        if hasattr(config, key) and key != "attention_target_weight":
            assert getattr(config, key) == value, key
    for key, value in arguments.ABN_DEFAULTS.items():
        if key not in ("backbone", "image_size"):
            assert abn.get_config()[key] == value, key
    assert mining.pc_weight == config.pc_weight == 1.0  # the paper's; synthetic.yaml says 0.1
    old = arguments.saved_arguments({"mining": True, "num_classes": 4})
    assert old["amb"] is True and old["area_weight"] == 0.0 and old["amb_gradient"] == "all"
    assert model_file.DEFAULTS["AttentionMiningNetwork"] is arguments.MINING_DEFAULTS
