import keras
from keras import ops

from keras_amb.layers.residual_block import build_stage
from keras_amb.layers.residual_block import residual_stage


@keras.saving.register_keras_serializable(package="keras_amb")
class AttentionBranch(keras.layers.Layer):
    """ABN's attention branch: the attention map and the branch's logits.

    On the feature map F of the feature extractor: an unshared, stride-1 copy
    of the backbone's last stage, BN, 1x1 conv to K channels (no bias), BN,
    ReLU. From those K class maps come
    - the attention map A: 3x3 conv K->1 (no bias), BN, sigmoid; `(N, H, W, 1)`
      in `(0, 1)`, at F's resolution;
    - the attention-branch logits: 1x1 conv K->K (no bias), global average
      pooling; trained with L_att = CE(labels, logits);
    - the pooled class maps (GAP of the K channels), the attention module's
      feature for the prototype conformity loss.

    Args:
        num_classes: int, number of classes K.
        stage_filters: int, width of the copied last stage.
        stage_blocks: int, number of residual blocks in it.
        bottleneck: bool, bottleneck or basic residual blocks.
        use_bias: bool, whether the stage's convolutions have a bias.
        bn_momentum: float, momentum of the batch normalisation layers.

    Example:
    >>> branch = AttentionBranch(num_classes=5, stage_filters=8, stage_blocks=1,
    ...                          bottleneck=False)
    >>> out = branch(keras.ops.ones((2, 6, 6, 4)))
    >>> out["attention"].shape, out["logits"].shape, out["features"].shape
    ((2, 6, 6, 1), (2, 5), (2, 5))
    """

    def __init__(
        self,
        num_classes,
        stage_filters=512,
        stage_blocks=3,
        bottleneck=True,
        use_bias=True,
        bn_momentum=0.9,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(
                f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
            )
        self.num_classes = int(num_classes)
        self.stage_filters = int(stage_filters)
        self.stage_blocks = int(stage_blocks)
        self.bottleneck = bool(bottleneck)
        self.use_bias = bool(use_bias)
        self.bn_momentum = bn_momentum

        # === Layers ===
        def bn(name):
            return keras.layers.BatchNormalization(
                momentum=bn_momentum, epsilon=1e-5, dtype=self.dtype_policy, name=name
            )

        def conv(filters, kernel_size, name):
            return keras.layers.Conv2D(
                filters,
                kernel_size,
                padding="same",
                use_bias=False,
                kernel_initializer="he_normal",
                dtype=self.dtype_policy,
                name=name,
            )

        self.stage = residual_stage(
            self.stage_filters,
            self.stage_blocks,
            stride=1,
            bottleneck=self.bottleneck,
            use_bias=self.use_bias,
            bn_momentum=bn_momentum,
            dtype=self.dtype_policy,
            name="attention_conv5",
        )
        self.stage_bn = bn("attention_stage_bn")
        self.class_conv = conv(self.num_classes, 1, "attention_class_conv")
        self.class_bn = bn("attention_class_bn")
        self.map_conv = conv(1, 3, "attention_map_conv")
        self.map_bn = bn("attention_map_bn")
        self.logits_conv = conv(self.num_classes, 1, "attention_logits_conv")

    def build(self, input_shape):
        shape = build_stage(self.stage, input_shape)
        self.stage_bn.build(shape)
        self.class_conv.build(shape)
        shape = shape[:-1] + (self.num_classes,)
        self.class_bn.build(shape)
        self.map_conv.build(shape)
        self.map_bn.build(shape[:-1] + (1,))
        self.logits_conv.build(shape)

    def call(self, features, training=None):
        x = features
        for block in self.stage:
            x = block(x, training=training)
        x = self.stage_bn(x, training=training)
        class_maps = ops.relu(self.class_bn(self.class_conv(x), training=training))
        attention = self.map_bn(self.map_conv(class_maps), training=training)
        attention = ops.sigmoid(ops.cast(attention, "float32"))
        logits = ops.mean(self.logits_conv(class_maps), axis=(1, 2))
        pooled = ops.mean(class_maps, axis=(1, 2))
        return {
            "attention": attention,
            "logits": ops.cast(logits, "float32"),
            "features": ops.cast(pooled, "float32"),
        }

    def compute_output_spec(self, features, training=None):
        n, h, w = features.shape[0], features.shape[1], features.shape[2]
        k = self.num_classes
        return {
            "attention": keras.KerasTensor((n, h, w, 1), dtype="float32"),
            "logits": keras.KerasTensor((n, k), dtype="float32"),
            "features": keras.KerasTensor((n, k), dtype="float32"),
        }

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
            }
        )
        return config
