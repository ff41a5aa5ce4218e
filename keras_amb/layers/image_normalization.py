import keras
from keras import ops

# BGR channel means of the Caffe-style ImageNet preprocessing that
# `keras.applications.ResNet50` weights expect.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# RGB mean and std (of [0, 1] pixels) of torchvision's ImageNet preprocessing,
# which the official ABN code uses.
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
MODES = ("caffe", "torch", "unit", "none")


@keras.saving.register_keras_serializable(package="keras_amb")
class ImageNormalization(keras.layers.Layer):
    """Maps RGB pixels in `[0, 255]` to what a backbone expects.

    Putting this inside the model means every consumer (training pipelines,
    `keras-amb visualize`, the exported SavedModel) feeds raw pixels and can
    never disagree about normalisation.

    Args:
        mode: str, `"caffe"` (RGB to BGR, ImageNet mean subtracted, as
            `keras.applications.ResNet50` expects), `"torch"` (scaled to
            `[0, 1]`, ImageNet mean and std, as torchvision and the official
            ABN code), `"unit"` (scaled to `[-1, 1]`) or `"none"`.

    Example:
    >>> layer = ImageNormalization("unit")
    >>> float(layer(keras.ops.full((1, 2, 2, 3), 255.0))[0, 0, 0, 0])
    1.0
    """

    def __init__(self, mode="unit", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
            return x - mean
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "unit":
            return x / 127.5 - 1.0
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
