import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_amb")
class MiningMask(keras.layers.Layer):
    """The mask `T(A)` of eq. 1, which the mining branch removes from the
    features (`F* = F - T(A) * F`): ~1 where attention is above a threshold.

    `T(A) = sigmoid(slope * (A - threshold))` (GAIN's soft mask, so the
    attention map receives gradient from the attention mining loss). With
    `hard=True` the forward value is the binary mask `A > threshold` and the
    gradient is the soft mask's (straight-through estimator).

    Args:
        threshold: float in `[0, 1]`, the paper's sigma (0.78 for
            CUB-200-2010, 0.40 for Stanford Dogs).
        slope: float > 0, the paper's omega (default 10).
        hard: bool, use the straight-through hard mask.

    Example:
    >>> mask = MiningMask(threshold=0.5, slope=10.0)
    >>> round(float(mask(keras.ops.full((1, 1, 1, 1), 0.5))[0, 0, 0, 0]), 3)
    0.5
    """

    def __init__(self, threshold=0.5, slope=10.0, hard=False, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(
                f"`threshold` must be in [0, 1]. Received: threshold={threshold!r}"
            )
        if slope <= 0:
            raise ValueError(f"`slope` must be > 0. Received: slope={slope!r}")
        self.threshold = float(threshold)
        self.slope = float(slope)
        self.hard = bool(hard)
        # No weights: built from the start. An ABN never calls its mask, and
        # on JAX `predict_on_batch` runs the whole model eagerly before each
        # batch while any layer is unbuilt (a JAX `evaluate` spent more time
        # on those eager passes than on its compiled ones).
        self.built = True

    def call(self, attention):
        attention = ops.cast(attention, "float32")
        soft = ops.sigmoid(self.slope * (attention - self.threshold))
        if not self.hard:
            return soft
        hard = ops.cast(attention > self.threshold, "float32")
        return soft + ops.stop_gradient(hard - soft)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"threshold": self.threshold, "slope": self.slope, "hard": self.hard}
        )
        return config


@keras.saving.register_keras_serializable(package="keras_amb", name="SoftMask")
class _SoftMask(MiningMask):
    """`MiningMask` under its old name `SoftMask`, so that configs saved
    before the rename still deserialize (it was soft or hard, by `hard`);
    kept through 1.x, removed in 2.0."""
