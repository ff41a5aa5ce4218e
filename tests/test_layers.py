import keras
import numpy as np
import pytest

from keras_amb import layers
from tests.helpers import run_layer_round_trip as _roundtrip


def test_mining_mask_values_and_hard_variant():
    a = np.array([0.0, 0.4, 0.5, 0.6, 1.0], dtype="float32").reshape(1, 5, 1, 1)
    soft = keras.ops.convert_to_numpy(_roundtrip(layers.MiningMask(0.5, 10.0), a)).ravel()
    np.testing.assert_allclose(soft, 1 / (1 + np.exp(-10 * (a.ravel() - 0.5))), atol=1e-6)
    hard = keras.ops.convert_to_numpy(layers.MiningMask(0.5, 10.0, hard=True)(a)).ravel()
    np.testing.assert_allclose(hard, [0, 0, 0, 1, 1], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, bad", [({"threshold": 1.5}, "1.5"), ({"slope": -2.0}, "-2.0")]
)
def test_mining_mask_rejects_bad_arguments(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        layers.MiningMask(**kwargs)


def test_attention_mechanism_with_and_without_bypass():
    f = np.full((1, 2, 2, 3), 2.0, dtype="float32")
    a = np.full((1, 2, 2, 1), 0.25, dtype="float32")
    with_bypass = _roundtrip(layers.AttentionMechanism(bypass=True), f, a)
    without = layers.AttentionMechanism(bypass=False)(f, a)
    assert float(with_bypass[0, 0, 0, 0]) == pytest.approx(2.5)
    assert float(without[0, 0, 0, 0]) == pytest.approx(0.5)


def test_attention_branch_outputs():
    branch = layers.AttentionBranch(
        num_classes=5, stage_filters=8, stage_blocks=2, bottleneck=False
    )
    out = _roundtrip(branch, np.random.rand(2, 6, 6, 4).astype("float32"))
    attention = keras.ops.convert_to_numpy(out["attention"])
    assert attention.shape == (2, 6, 6, 1)
    assert attention.min() > 0 and attention.max() < 1
    assert tuple(out["logits"].shape) == (2, 5)
    assert tuple(out["features"].shape) == (2, 5)
    # The stage is an unshared stride-1 copy: resolution is kept.
    assert branch.stage[0].stride == 1


def test_perception_branch_bottleneck_outputs():
    branch = layers.PerceptionBranch(num_classes=3, stage_filters=4, stage_blocks=1)
    out = _roundtrip(branch, np.random.rand(2, 8, 8, 16).astype("float32"))
    assert tuple(out["logits"].shape) == (2, 3)
    assert tuple(out["features"].shape) == (2, 16)  # 4 * filters
    assert branch.stage[0].stride == 2


def test_class_centers_and_image_normalization():
    centers = layers.ClassCenters(3, 4)
    out = _roundtrip(centers, np.zeros((1, 4), "float32"))
    assert tuple(out.shape) == (3, 4)
    with pytest.raises(ValueError, match="0"):
        layers.ClassCenters(0, 4)
    x = np.full((1, 1, 1, 3), 255.0, "float32")
    caffe = keras.ops.convert_to_numpy(_roundtrip(layers.ImageNormalization("caffe"), x))
    np.testing.assert_allclose(caffe.ravel(), [255 - 103.939, 255 - 116.779, 255 - 123.68], atol=1e-4)
    with pytest.raises(ValueError, match="'imagenet'"):
        layers.ImageNormalization("imagenet")


def test_residual_block_shapes():
    block = layers.ResidualBlock(8, stride=2, bottleneck=True, conv_shortcut=True)
    out = _roundtrip(block, np.random.rand(1, 8, 8, 3).astype("float32"))
    assert tuple(out.shape) == (1, 4, 4, 32)
    with pytest.raises(ValueError, match="stride=3"):
        layers.ResidualBlock(8, stride=3)


def test_batch_normalization_frozen_statistics_normalise_without_updating():
    bn = layers.BatchNormalization(momentum=0.5)
    x = np.random.default_rng(0).normal(3.0, 2.0, (64, 4)).astype("float32")
    with layers.frozen_statistics():
        frozen = keras.ops.convert_to_numpy(bn(x, training=True))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), 0.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), 1.0)
    # Normalised with the batch's own statistics, as in training.
    np.testing.assert_allclose(frozen.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(frozen.std(0), 1.0, atol=1e-2)
    updated = keras.ops.convert_to_numpy(bn(x, training=True))
    np.testing.assert_allclose(updated, frozen, atol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn.moving_mean), 0.5 * x.mean(0), rtol=1e-4)
    assert not layers.batch_normalization.statistics_frozen()


def test_residual_block_versions_place_the_stride():
    v1 = layers.ResidualBlock(4, stride=2, bottleneck=True, conv_shortcut=True, version="v1")
    v15 = layers.ResidualBlock(4, stride=2, bottleneck=True, conv_shortcut=True,
                               version="v1.5", use_bias=False)
    for block in (v1, v15):
        _roundtrip(block, np.random.rand(1, 8, 8, 8).astype("float32"))
    assert [c.strides[0] for c in v1.convs] == [2, 1, 1]
    assert [c.strides[0] for c in v15.convs] == [1, 2, 1]
    assert not any(c.use_bias for c in v15.convs) and all(c.use_bias for c in v1.convs)
    with pytest.raises(ValueError, match="'v2'"):
        layers.ResidualBlock(4, version="v2")


def test_branches_share_one_base():
    attention = layers.AttentionBranch(num_classes=3, stage_filters=4, stage_blocks=1,
                                       bottleneck=False)
    perception = layers.PerceptionBranch(num_classes=3, stage_filters=4, stage_blocks=1,
                                         bottleneck=False)
    for branch in (attention, perception):
        assert isinstance(branch, layers.StageBranch)
        with pytest.raises(ValueError, match="num_classes=1"):
            branch.__class__(num_classes=1)
    out = perception(np.ones((1, 4, 4, 2), "float32"))
    assert tuple(out["feature_map"].shape) == (1, 2, 2, 4)
    # The attention map's weights: everything but the logits head.
    attention(np.ones((1, 4, 4, 2), "float32"))
    assert len(attention.trainable_variables) > 1
    assert len(attention.map_variables) == len(attention.trainable_variables) - 1


def _input_grad(fn, x):
    from keras_amb.models.gradients import input_gradient

    return keras.ops.convert_to_numpy(input_gradient(fn, keras.ops.convert_to_tensor(x)))


@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_matches_keras(training):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (6, 5, 7, 4)).astype("float32")
    ours, theirs = layers.BatchNormalization(momentum=0.8), keras.layers.BatchNormalization(momentum=0.8)
    for layer in (ours, theirs):
        layer.build(x.shape)
    weights = [rng.normal(1, 0.2, 4), rng.normal(0, 0.2, 4), rng.normal(0, 1, 4),
               rng.uniform(0.5, 2, 4)]
    for layer in (ours, theirs):
        layer.set_weights([w.astype("float32") for w in weights])
    a = keras.ops.convert_to_numpy(ours(x, training=training))
    b = keras.ops.convert_to_numpy(theirs(x, training=training))
    np.testing.assert_allclose(a, b, atol=1e-4)
    for mine, keras_one in zip(ours.non_trainable_variables, theirs.non_trainable_variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mine),
                                   keras.ops.convert_to_numpy(keras_one), rtol=1e-5, atol=1e-6)
    w = keras.ops.convert_to_tensor(rng.normal(size=x.shape).astype("float32"))
    grad_ours = _input_grad(lambda v: keras.ops.multiply(ours(v, training=training), w), x)
    grad_theirs = _input_grad(lambda v: keras.ops.multiply(theirs(v, training=training), w), x)
    np.testing.assert_allclose(grad_ours, grad_theirs, atol=1e-4)


@pytest.mark.parametrize("kernel, strides, padding, size", [
    (3, 1, "same", 8), (3, 2, "same", 8), (3, 2, "same", 7), (1, 2, "same", 8),
    (7, 2, "valid", 15), (3, 1, "valid", 6),
])
def test_conv2d_matches_keras(kernel, strides, padding, size):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, size, size, 3)).astype("float32")
    ours = layers.Conv2D(5, kernel, strides=strides, padding=padding)
    theirs = keras.layers.Conv2D(5, kernel, strides=strides, padding=padding)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)),
                               keras.ops.convert_to_numpy(theirs(x)), atol=1e-4)
    np.testing.assert_allclose(_input_grad(lambda v: keras.ops.square(ours(v)), x),
                               _input_grad(lambda v: keras.ops.square(theirs(v)), x), atol=1e-3)


def test_a_config_saved_under_the_mining_masks_old_name_still_loads():
    layer = layers.MiningMask(0.4, 5.0, hard=True)
    saved = keras.saving.serialize_keras_object(layer)
    assert saved["registered_name"] == "keras_amb>MiningMask"
    saved["registered_name"], saved["class_name"] = "keras_amb>SoftMask", "SoftMask"
    loaded = keras.saving.deserialize_keras_object(saved)
    assert isinstance(loaded, type(layer))
    assert loaded.get_config() == layer.get_config()
