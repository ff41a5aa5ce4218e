import keras

from keras_amb.layers import kernels


@keras.saving.register_keras_serializable(package="keras_amb")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`, without Keras's two layout copies on PyTorch.

    Same arguments, weights and results as the Keras layer. On the PyTorch
    backend, a channels-last convolution runs on a permuted view of its input
    (`layers.kernels.conv2d_channels_last`); elsewhere it is Keras's own.

    The class keeps Keras's name on purpose: Keras's `.keras` files store
    the weights of layers held in lists under paths built from the class
    name (`conv2d`, `..._1`), so a new name would leave every
    saved model's weights unloadable (`tests/test_compatibility.py`
    fails). Write it `conv2d.Conv2D` (or `keras_amb.layers.Conv2D`) beside
    `keras.layers.Conv2D`, never as a bare imported name.

    Example:
    >>> conv = Conv2D(4, 3, padding="same")
    >>> conv(keras.ops.ones((1, 5, 5, 2))).shape
    (1, 5, 5, 4)
    """

    def convolution_op(self, inputs, kernel):
        if self.data_format == "channels_last":
            out = kernels.conv2d_channels_last(
                inputs, kernel, self.strides, self.padding, self.dilation_rate, self.groups
            )
            if out is not None:
                return out
        return super().convolution_op(inputs, kernel)
