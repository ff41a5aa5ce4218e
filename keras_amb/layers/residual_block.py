import copy

import keras

from keras_amb.layers import batch_normalization
from keras_amb.layers import conv2d

VERSIONS = ("v1", "v1.5")


@keras.saving.register_keras_serializable(package="keras_amb")
class ResidualBlock(keras.layers.Layer):
    """A ResNet residual block, basic or bottleneck.

    With `version="v1"` the bottleneck matches `keras.applications.ResNet50`
    (stride on the first 1x1 convolution) and its sub-layers carry the same
    names (`{name}_1_conv`, `{name}_1_bn`, ..., `{name}_0_conv` for the
    projection shortcut), so ImageNet weights can be copied by name. With
    `version="v1.5"` the stride sits on the 3x3 convolution, as in
    torchvision and the official ABN code.

    Args:
        filters: int, width of the block (the bottleneck's output has
            `4 * filters` channels).
        stride: int, 1 or 2, stride of the block.
        bottleneck: bool, bottleneck (1x1, 3x3, 1x1) or basic (3x3, 3x3) block.
        conv_shortcut: bool, use a 1x1 projection shortcut.
        use_bias: bool, whether convolutions have a bias.
        bn_momentum: float, momentum of the batch normalisation layers.
        version: str, `"v1"` or `"v1.5"` (where a bottleneck's stride goes).
        kernel_initializer: str or initializer of the convolutions.

    Example:
    >>> block = ResidualBlock(16, stride=2, bottleneck=False, conv_shortcut=True)
    >>> block(keras.ops.ones((1, 8, 8, 3))).shape
    (1, 4, 4, 16)
    """

    def __init__(
        self,
        filters,
        stride=1,
        bottleneck=True,
        conv_shortcut=False,
        use_bias=True,
        bn_momentum=0.9,
        version="v1",
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(filters) != filters or filters < 1:
            raise ValueError(
                f"`filters` must be a positive int. Received: filters={filters!r}"
            )
        if stride not in (1, 2):
            raise ValueError(f"`stride` must be 1 or 2. Received: stride={stride!r}")
        if version not in VERSIONS:
            raise ValueError(
                f"`version` must be one of {VERSIONS}. Received: version={version!r}"
            )
        self.filters = int(filters)
        self.stride = stride
        self.bottleneck = bool(bottleneck)
        self.conv_shortcut = bool(conv_shortcut)
        self.use_bias = bool(use_bias)
        self.bn_momentum = bn_momentum
        self.version = version
        # Kept as a config: every convolution gets its own initializer object
        # (a shared one could hand identical values to layers of one shape).
        self.kernel_initializer = keras.initializers.serialize(
            keras.initializers.get(kernel_initializer)
        )
        self.output_channels = self.filters * (4 if self.bottleneck else 1)

        # === Layers ===
        name = self.name

        def conv(filters, kernel_size, strides, suffix):
            return conv2d.Conv2D(
                filters,
                kernel_size,
                strides=strides,
                padding="same",
                use_bias=self.use_bias,
                kernel_initializer=keras.initializers.get(
                    copy.deepcopy(self.kernel_initializer)
                ),
                dtype=self.dtype_policy,
                name=f"{name}_{suffix}_conv",
            )

        def bn(suffix):
            return batch_normalization.BatchNormalization(
                epsilon=1.001e-5,
                momentum=bn_momentum,
                dtype=self.dtype_policy,
                name=f"{name}_{suffix}_bn",
            )

        if self.conv_shortcut:
            self.shortcut_conv = conv(self.output_channels, 1, stride, "0")
            self.shortcut_bn = bn("0")
        if self.bottleneck:
            first, middle = (stride, 1) if version == "v1" else (1, stride)
            kernels = [(self.filters, 1, first), (self.filters, 3, middle)]
            kernels.append((self.output_channels, 1, 1))
        else:
            kernels = [(self.filters, 3, stride), (self.filters, 3, 1)]
        self.convs = [conv(f, k, s, str(i + 1)) for i, (f, k, s) in enumerate(kernels)]
        self.bns = [bn(str(i + 1)) for i in range(len(kernels))]

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.conv_shortcut:
            self.shortcut_conv.build(shape)
            out_shape = self.shortcut_conv.compute_output_shape(shape)
            self.shortcut_bn.build(out_shape)
        elif shape[-1] != self.output_channels or self.stride != 1:
            raise ValueError(
                "An identity shortcut needs stride 1 and as many input as output "
                f"channels. Received: input_shape={input_shape}, "
                f"output_channels={self.output_channels}, stride={self.stride}"
            )
        for conv, bn in zip(self.convs, self.bns):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            bn.build(shape)

    def call(self, inputs, training=None):
        if self.conv_shortcut:
            shortcut = self.shortcut_bn(self.shortcut_conv(inputs), training=training)
        else:
            shortcut = inputs
        x = inputs
        last = len(self.convs) - 1
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = bn(conv(x), training=training)
            if i < last:
                x = keras.ops.relu(x)
        return keras.ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.convs:
            shape = conv.compute_output_shape(shape)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "stride": self.stride,
                "bottleneck": self.bottleneck,
                "conv_shortcut": self.conv_shortcut,
                "use_bias": self.use_bias,
                "bn_momentum": self.bn_momentum,
                "version": self.version,
                "kernel_initializer": copy.deepcopy(self.kernel_initializer),
            }
        )
        return config


def residual_stage(
    filters,
    blocks,
    stride,
    bottleneck,
    use_bias,
    name,
    bn_momentum=0.9,
    version="v1",
    kernel_initializer="he_normal",
    dtype=None,
):
    """The blocks of one ResNet stage, named like `keras.applications`."""
    return [
        ResidualBlock(
            filters,
            stride=stride if i == 0 else 1,
            bottleneck=bottleneck,
            conv_shortcut=(i == 0),
            use_bias=use_bias,
            bn_momentum=bn_momentum,
            version=version,
            kernel_initializer=kernel_initializer,
            dtype=dtype,
            name=f"{name}_block{i + 1}",
        )
        for i in range(blocks)
    ]
