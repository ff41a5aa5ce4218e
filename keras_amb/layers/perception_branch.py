import keras
from keras import ops

from keras_amb.layers.stage_branch import StageBranch


@keras.saving.register_keras_serializable(package="keras_amb")
class PerceptionBranch(StageBranch):
    """ABN's perception branch: the backbone's last stage, GAP and a classifier.

    The same layer (shared weights) is also the attention mining branch: the
    model calls it a second time on the masked features `F - T(A) * F`.
    Besides the logits it returns the pooled feature (the PC loss's feature)
    and the last stage's feature map, from which CAM is one product away.

    Args:
        dropout: float, dropout rate before the classifier.
        **kwargs: those of `StageBranch`.

    Example:
    >>> branch = PerceptionBranch(num_classes=5, stage_filters=8, stage_blocks=1,
    ...                           bottleneck=False)
    >>> out = branch(keras.ops.ones((2, 6, 6, 4)))
    >>> out["logits"].shape, out["features"].shape, out["feature_map"].shape
    ((2, 5), (2, 8), (2, 3, 3, 8))
    """

    def __init__(self, num_classes, dropout=0.0, **kwargs):
        super().__init__(num_classes, **kwargs)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        self.dropout = float(dropout)

        # === Layers ===
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.classifier = keras.layers.Dense(
            self.num_classes, dtype=self.dtype_policy, name="predictions"
        )
        self.feature_dim = self.stage_channels

    def build(self, input_shape):
        shape = self.build_stage(input_shape)
        self.classifier.build((shape[0], self.feature_dim))

    def call(self, features, training=None):
        feature_map = self.run_stage(features, training)
        pooled = ops.mean(feature_map, axis=(1, 2))
        logits = self.classifier(self.dropout_layer(pooled, training=training))
        return {
            "logits": ops.cast(logits, "float32"),
            "features": ops.cast(pooled, "float32"),
            "feature_map": feature_map,
        }

    def compute_output_spec(self, features, training=None):
        n = features.shape[0]
        map_shape = self.compute_stage_shape(features.shape)
        return {
            "logits": keras.KerasTensor((n, self.num_classes), dtype="float32"),
            "features": keras.KerasTensor((n, self.feature_dim), dtype="float32"),
            "feature_map": keras.KerasTensor(map_shape, dtype=self.compute_dtype),
        }

    def get_config(self):
        config = super().get_config()
        config.update({"dropout": self.dropout})
        return config
