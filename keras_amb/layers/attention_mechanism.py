import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_amb")
class AttentionMechanism(keras.layers.Layer):
    """Applies an attention map to features: `A * F + F` or `A * F`.

    ABN keeps the bypass (`A * F + F`); the proposed model drops it
    (`A * F`) so the attention map matters more to the prediction.

    Args:
        bypass: bool, add the features back (ABN's residual attention).

    Example:
    >>> layer = AttentionMechanism(bypass=True)
    >>> f = keras.ops.ones((1, 2, 2, 4))
    >>> a = keras.ops.full((1, 2, 2, 1), 0.5)
    >>> float(layer(f, a)[0, 0, 0, 0])
    1.5
    """

    def __init__(self, bypass=True, **kwargs):
        super().__init__(**kwargs)
        self.bypass = bool(bypass)

    def call(self, features, attention):
        attention = ops.cast(attention, features.dtype)
        attended = features * attention
        if self.bypass:
            attended = attended + features
        return attended

    def compute_output_shape(self, features_shape, attention_shape=None):
        return features_shape

    def get_config(self):
        config = super().get_config()
        config.update({"bypass": self.bypass})
        return config
