"""Custom layers of the attention branch, mining branch and PC loss."""

from keras_amb.layers.attention_branch import AttentionBranch
from keras_amb.layers.attention_mechanism import AttentionMechanism
from keras_amb.layers.batch_normalization import BatchNormalization
from keras_amb.layers.batch_normalization import frozen_statistics
from keras_amb.layers.class_centers import ClassCenters
from keras_amb.layers.conv2d import Conv2D
from keras_amb.layers.image_normalization import ImageNormalization
from keras_amb.layers.perception_branch import PerceptionBranch
from keras_amb.layers.residual_block import ResidualBlock
from keras_amb.layers.mining_mask import MiningMask
from keras_amb.layers.stage_branch import StageBranch

__all__ = [
    "AttentionBranch",
    "AttentionMechanism",
    "BatchNormalization",
    "ClassCenters",
    "Conv2D",
    "ImageNormalization",
    "PerceptionBranch",
    "ResidualBlock",
    "MiningMask",
    "StageBranch",
    "frozen_statistics",
]
