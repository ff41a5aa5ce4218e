import keras


@keras.saving.register_keras_serializable(package="keras_amb")
class ClassCenters(keras.layers.Layer):
    """Learnable class centers `w^c` of the prototype conformity loss.

    Calling the layer returns the `(num_classes, feature_dim)` center matrix
    (its input is ignored; it only anchors the call in the graph).

    Args:
        num_classes: int, number of classes K.
        feature_dim: int, dimension of the features the centers live among.
        initializer: str or initializer for the centers.

    Example:
    >>> centers = ClassCenters(num_classes=3, feature_dim=4)
    >>> centers(keras.ops.zeros((2, 4))).shape
    (3, 4)
    """

    def __init__(
        self, num_classes, feature_dim, initializer="random_normal", **kwargs
    ):
        super().__init__(**kwargs)
        for arg, value in (("num_classes", num_classes), ("feature_dim", feature_dim)):
            if int(value) != value or value < 1:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape=None):
        self.centers = self.add_weight(
            shape=(self.num_classes, self.feature_dim),
            initializer=self.initializer,
            dtype="float32",
            name="centers",
        )

    def call(self, inputs=None):
        return keras.ops.convert_to_tensor(self.centers)

    def compute_output_shape(self, input_shape=None):
        return (self.num_classes, self.feature_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "feature_dim": self.feature_dim,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
