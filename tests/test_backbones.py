import keras
import numpy as np
import pytest

from keras_amb import AttentionBranchNetwork
from keras_amb.models import backbones
from keras_amb.models import WeightsUnavailableError


# The ResNet-50 tests read its structure or load weight files into it, which
# no backend changes: they run once, under torch (the shortest suite). Under
# JAX, which compiles each new initializer shape, they cost 48 s of its suite.
RESNET50_ONCE = pytest.mark.backend_independent("torch")


@pytest.fixture(scope="module")
def resnet50_abn():
    """One ResNet-50 ABN for the tests that only read its structure or load
    weights into it (building one takes 4-10 s of the 2 cores, most under
    JAX)."""
    return AttentionBranchNetwork(num_classes=3, backbone="resnet50", image_size=64)


@pytest.mark.parametrize("name, size, expected", [
    ("resnet_tiny", 32, 8), ("resnet_small", 64, 16),
    pytest.param("resnet50", 64, 4, marks=RESNET50_ONCE),
])
def test_feature_extractor_split_points(name, size, expected, request):
    if name == "resnet50":
        model = request.getfixturevalue("resnet50_abn").feature_extractor
    else:
        model = backbones.feature_extractor(name)
    shape = model.compute_output_shape((1, size, size, 3))
    assert shape[1:3] == (expected, expected)


@RESNET50_ONCE
def test_resnet50_shapes_match_the_paper(resnet50_abn):
    model = resnet50_abn  # the layers do not depend on image_size
    features = model.feature_extractor.compute_output_shape((1, 224, 224, 3))
    assert features == (1, 14, 14, 1024)
    assert model.perception_branch.feature_dim == 2048
    assert len(model.attention_branch.stage) == 3


@RESNET50_ONCE
def test_resnet50_loads_a_local_keras_applications_weights_file(tmp_path, resnet50_abn):
    source = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(None, None, 3)
    )
    path = str(tmp_path / "resnet50_notop.weights.h5")
    source.save_weights(path)
    model = resnet50_abn
    copied = model.load_backbone_weights(path)
    with_weights = [l.name for l in source.layers if l.weights]
    # Every source layer, plus stage 4 again for the attention branch's copy.
    assert copied == len(with_weights) + len([n for n in with_weights if n.startswith("conv5")])
    for ours, theirs in (
        (model.feature_extractor.get_layer("conv1_conv"), source.get_layer("conv1_conv")),
        (model.perception_branch.stage[2].convs[2], source.get_layer("conv5_block3_3_conv")),
        (model.attention_branch.stage[0].shortcut_conv, source.get_layer("conv5_block1_0_conv")),
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(ours.kernel), keras.ops.convert_to_numpy(theirs.kernel)
        )


@RESNET50_ONCE
def test_offline_imagenet_weights_give_one_clear_error(monkeypatch, resnet50_abn):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    model = resnet50_abn
    with pytest.raises(WeightsUnavailableError) as info:
        model.load_backbone_weights("imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert backbones.RESNET50_WEIGHTS_FILE in message and "--weights" in message


@RESNET50_ONCE
def test_missing_weights_file_and_small_backbone_are_refused(tmp_path, resnet50_abn):
    model = resnet50_abn
    with pytest.raises(WeightsUnavailableError, match="nope.h5"):
        model.load_backbone_weights(str(tmp_path / "nope.h5"))
    small = AttentionBranchNetwork(num_classes=3, backbone="resnet_tiny", image_size=32)
    with pytest.raises(ValueError, match="'resnet_tiny'"):
        small.load_backbone_weights("imagenet")


@RESNET50_ONCE
def test_official_resnet50_has_the_official_structure(resnet50_abn):
    model = AttentionBranchNetwork(num_classes=3, backbone="resnet50_official", image_size=64)
    convs = [l for l in model.feature_extractor.layers if l.__class__.__name__ == "Conv2D"]
    blocks = [l for l in model.feature_extractor.layers if hasattr(l, "convs")]
    first_strided = blocks[3]  # conv3_block1: the first block that downsamples
    assert [c.strides[0] for c in first_strided.convs] == [1, 2, 1]  # v1.5
    every_conv = convs + [c for b in blocks for c in b.convs]
    every_conv += [c for b in model.perception_branch.stage + model.attention_branch.stage
                   for c in b.convs]
    assert not any(c.use_bias for c in every_conv)
    # He-normal fan-out: std sqrt(2 / (k * k * out)) (PyTorch's kaiming_normal_).
    kernel = keras.ops.convert_to_numpy(first_strided.convs[1].kernel)
    expected = np.sqrt(2.0 / (3 * 3 * kernel.shape[-1]))
    assert kernel.std() == pytest.approx(expected, rel=0.05)
    features = model.feature_extractor.compute_output_shape((1, 224, 224, 3))
    assert features == resnet50_abn.feature_extractor.compute_output_shape((1, 224, 224, 3))
    with pytest.raises(ValueError, match="resnet50_official"):
        model.load_backbone_weights("imagenet")


@pytest.mark.parametrize("name", ["resnet_tiny", "resnet_small"])
def test_each_small_backbone_saves_loads_and_predicts_the_same(name, tmp_path):
    from keras_amb import AttentionMiningNetwork
    from keras_amb import arguments
    from tests.helpers import saved_model_round_trip

    assert name in arguments.BACKBONES and tuple(backbones.BACKBONES) == arguments.BACKBONES
    model = AttentionMiningNetwork(num_classes=3, backbone=name, image_size=32)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    loaded, out = saved_model_round_trip(model, x, str(tmp_path / f"{name}.keras"))
    assert loaded.backbone == name and out["probabilities"].shape == (2, 3)
