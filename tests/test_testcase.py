"""Every registered keras-amb layer and model through the shared TestCase
(#37 §4): eager and symbolic calls, output specs, weight counts, a JSON
round trip of the config, each dtype policy, and saving, for every backbone
small enough for a unit test."""

import numpy as np
import pytest

from keras_amb import layers
from keras_amb.arguments import BACKBONES
from keras_amb.models import AttentionBranchNetwork
from keras_amb.models import AttentionMiningNetwork
from tests.helpers import TestCase

RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.uniform(0, 1, shape).astype("float32")


class TestLayers(TestCase):
    def test_attention_branch(self):
        self.run_layer_test(
            layers.AttentionBranch, {"num_classes": 5, "stage_filters": 8, "stage_blocks": 1,
                                     "bottleneck": False},
            _x(2, 6, 6, 4), {"attention": (6, 6, 1), "logits": (5,), "features": (5,)})

    def test_perception_branch(self):
        self.run_layer_test(
            layers.PerceptionBranch, {"num_classes": 3, "stage_filters": 4, "stage_blocks": 1},
            _x(2, 8, 8, 16), {"logits": (3,), "features": (16,)})

    def test_attention_mechanism(self):
        self.run_layer_test(layers.AttentionMechanism, {"bypass": False},
                            (_x(2, 4, 4, 3), _x(2, 4, 4, 1)), (4, 4, 3),
                            expected_num_trainable_weights=0)

    def test_mining_mask(self):
        self.run_layer_test(layers.MiningMask, {"threshold": 0.4, "slope": 10.0},
                            _x(2, 4, 4, 1), (4, 4, 1), expected_num_trainable_weights=0)

    def test_class_centers(self):
        self.run_layer_test(layers.ClassCenters, {"num_classes": 3, "feature_dim": 4},
                            _x(1, 4), (3, 4), expected_num_trainable_weights=1, batched=False)

    def test_image_normalization(self):
        self.run_layer_test(layers.ImageNormalization, {"mode": "torch"}, _x(2, 4, 4, 3) * 255,
                            (4, 4, 3), expected_num_trainable_weights=0)

    def test_residual_block(self):
        self.run_layer_test(layers.ResidualBlock, {"filters": 4, "stride": 2,
                                                   "bottleneck": True, "conv_shortcut": True},
                            _x(1, 8, 8, 3), (4, 4, 16))

    def test_batch_normalization(self):
        self.run_layer_test(layers.BatchNormalization, {}, _x(2, 4, 4, 3), (4, 4, 3),
                            expected_num_trainable_weights=2,
                            expected_num_non_trainable_weights=2)

    def test_conv2d(self):
        self.run_layer_test(layers.Conv2D, {"filters": 5, "kernel_size": 3, "padding": "same"},
                            _x(1, 6, 6, 2), (6, 6, 5), expected_num_trainable_weights=2)


SMALL_BACKBONES = [b for b in BACKBONES if not b.startswith("resnet50")]


class TestModels(TestCase):
    @pytest.mark.parametrize("backbone", SMALL_BACKBONES)
    @pytest.mark.parametrize("cls", [AttentionBranchNetwork, AttentionMiningNetwork])
    def test_model_saves_and_loads(self, cls, backbone, tmp_path):
        model = cls(num_classes=3, backbone=backbone, image_size=32, class_names=["a", "b", "c"])
        x = RNG.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        out = model(x)
        assert tuple(out["probabilities"].shape) == (2, 3)
        assert model.count_params() <= __import__(
            "keras_amb.model_file", fromlist=["x"]).declared_parameters(backbone, 3)
        self.run_model_saving_test(model, x, str(tmp_path / "m.keras"))
