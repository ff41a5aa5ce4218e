import keras

from keras_amb.layers import batch_normalization
from keras_amb.layers.residual_block import residual_stage


@keras.saving.register_keras_serializable(package="keras_amb")
class StageBranch(keras.layers.Layer):
    """A branch that starts with a copy of the backbone's last ResNet stage.

    The common base of ABN's attention branch (the stage at stride 1) and
    perception branch (the stage at stride 2): the same arguments, checks,
    stage construction and config. Subclasses add their head.

    Args:
        num_classes: int, number of classes K.
        stage_filters: int, width of the stage.
        stage_blocks: int, number of residual blocks in it.
        bottleneck: bool, bottleneck or basic residual blocks.
        use_bias: bool, whether the stage's convolutions have a bias.
        bn_momentum: float, momentum of the batch normalisation layers.
        block_version: str, `"v1"` or `"v1.5"` (see `ResidualBlock`).
        kernel_initializer: str or initializer of the stage's convolutions.

    Example:
    >>> branch = StageBranch(num_classes=3, stage_filters=8, stage_blocks=1,
    ...                      bottleneck=False)
    >>> branch.run_stage(keras.ops.ones((1, 4, 4, 5))).shape
    (1, 2, 2, 8)
    """

    stride = 2
    stage_name = "conv5"

    def __init__(
        self,
        num_classes,
        stage_filters=512,
        stage_blocks=3,
        bottleneck=True,
        use_bias=True,
        bn_momentum=0.9,
        block_version="v1",
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(
                f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
            )
        for arg, value in (("stage_filters", stage_filters), ("stage_blocks", stage_blocks)):
            if int(value) != value or value < 1:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        self.num_classes = int(num_classes)
        self.stage_filters = int(stage_filters)
        self.stage_blocks = int(stage_blocks)
        self.bottleneck = bool(bottleneck)
        self.use_bias = bool(use_bias)
        self.bn_momentum = bn_momentum
        self.block_version = block_version
        self.kernel_initializer = keras.initializers.serialize(
            keras.initializers.get(kernel_initializer)
        )
        self.stage_channels = self.stage_filters * (4 if self.bottleneck else 1)
        self.stage = residual_stage(
            self.stage_filters,
            self.stage_blocks,
            stride=self.stride,
            bottleneck=self.bottleneck,
            use_bias=self.use_bias,
            bn_momentum=bn_momentum,
            version=block_version,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=self.stage_name,
        )

    def batch_normalization(self, name):
        return batch_normalization.BatchNormalization(
            momentum=self.bn_momentum, epsilon=1e-5, dtype=self.dtype_policy, name=name
        )

    def build_stage(self, input_shape):
        """Builds the stage's blocks; returns the stage's output shape."""
        shape = tuple(input_shape)
        for block in self.stage:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        return shape

    def compute_stage_shape(self, input_shape):
        shape = tuple(input_shape)
        for block in self.stage:
            shape = block.compute_output_shape(shape)
        return shape

    def build(self, input_shape):
        self.build_stage(input_shape)

    def run_stage(self, features, training=None):
        x = features
        for block in self.stage:
            x = block(x, training=training)
        return x

    def call(self, features, training=None):
        return self.run_stage(features, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "stage_filters": self.stage_filters,
                "stage_blocks": self.stage_blocks,
                "bottleneck": self.bottleneck,
                "use_bias": self.use_bias,
                "bn_momentum": self.bn_momentum,
                "block_version": self.block_version,
                "kernel_initializer": self.kernel_initializer,
            }
        )
        return config
