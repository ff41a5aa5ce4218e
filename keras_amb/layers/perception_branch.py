import keras
from keras import ops

from keras_amb.layers.residual_block import build_stage
from keras_amb.layers.residual_block import residual_stage


@keras.saving.register_keras_serializable(package="keras_amb")
class PerceptionBranch(keras.layers.Layer):
    """ABN's perception branch: the backbone's last stage, GAP and a classifier.

    The same layer (shared weights) is also the attention mining branch: the
    model calls it a second time on the masked features `F - T(A) * F`.

    Args:
        num_classes: int, number of classes K.
        stage_filters: int, width of the last stage.
        stage_blocks: int, number of residual blocks in it.
        bottleneck: bool, bottleneck or basic residual blocks.
        use_bias: bool, whether the stage's convolutions have a bias.
        bn_momentum: float, momentum of the batch normalisation layers.
        dropout: float, dropout rate before the classifier.

    Example:
    >>> branch = PerceptionBranch(num_classes=5, stage_filters=8, stage_blocks=1,
    ...                           bottleneck=False)
    >>> out = branch(keras.ops.ones((2, 6, 6, 4)))
    >>> out["logits"].shape, out["features"].shape
    ((2, 5), (2, 8))
    """

    def __init__(
        self,
        num_classes,
        stage_filters=512,
        stage_blocks=3,
        bottleneck=True,
        use_bias=True,
        bn_momentum=0.9,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(
                f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        self.num_classes = int(num_classes)
        self.stage_filters = int(stage_filters)
        self.stage_blocks = int(stage_blocks)
        self.bottleneck = bool(bottleneck)
        self.use_bias = bool(use_bias)
        self.bn_momentum = bn_momentum
        self.dropout = float(dropout)

        # === Layers ===
        self.stage = residual_stage(
            self.stage_filters,
            self.stage_blocks,
            stride=2,
            bottleneck=self.bottleneck,
            use_bias=self.use_bias,
            bn_momentum=bn_momentum,
            dtype=self.dtype_policy,
            name="conv5",
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.classifier = keras.layers.Dense(
            self.num_classes, dtype=self.dtype_policy, name="predictions"
        )
        self.feature_dim = self.stage_filters * (4 if self.bottleneck else 1)

    def build(self, input_shape):
        shape = build_stage(self.stage, input_shape)
        self.classifier.build((shape[0], self.feature_dim))

    def call(self, features, training=None):
        x = features
        for block in self.stage:
            x = block(x, training=training)
        pooled = ops.mean(x, axis=(1, 2))
        logits = self.classifier(self.dropout_layer(pooled, training=training))
        return {
            "logits": ops.cast(logits, "float32"),
            "features": ops.cast(pooled, "float32"),
        }

    def compute_output_spec(self, features, training=None):
        n = features.shape[0]
        return {
            "logits": keras.KerasTensor((n, self.num_classes), dtype="float32"),
            "features": keras.KerasTensor((n, self.feature_dim), dtype="float32"),
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
                "dropout": self.dropout,
            }
        )
        return config
