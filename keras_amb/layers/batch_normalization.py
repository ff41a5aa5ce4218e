import contextlib
import threading

import keras
from keras import ops

_STATE = threading.local()


@contextlib.contextmanager
def frozen_statistics():
    """Within this context, training-mode batch normalisation does not update
    its moving mean and variance (it still normalises with the batch's own).

    The attention mining branch runs the shared perception branch on masked
    features, and COT's step recomputes a batch the main step has already
    counted; neither must move the statistics the perception branch uses at
    test time. The flag is read when a layer is called (traced, under
    `tf.function` or `jax.jit`), so it works the same on every backend.

    Example:
    >>> bn = BatchNormalization()
    >>> x = keras.ops.ones((4, 3))
    >>> with frozen_statistics():
    ...     _ = bn(x, training=True)
    >>> float(keras.ops.sum(bn.moving_mean))
    0.0
    """
    previous = getattr(_STATE, "frozen", False)
    _STATE.frozen = True
    try:
        yield
    finally:
        _STATE.frozen = previous


def statistics_frozen():
    """Whether `frozen_statistics()` is active in this thread."""
    return getattr(_STATE, "frozen", False)


@keras.saving.register_keras_serializable(package="keras_amb")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that honours `frozen_statistics()`.

    Same arguments, weights and behaviour as the Keras layer, except that in
    training mode under `frozen_statistics()` it normalises with the batch's
    statistics without updating the moving ones.

    Example:
    >>> bn = BatchNormalization(momentum=0.9)
    >>> _ = bn(keras.ops.ones((4, 3)), training=True)
    >>> round(float(bn.moving_mean[0]), 3)
    0.1
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and statistics_frozen()) or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        inputs = ops.cast(inputs, compute_dtype)
        mean, variance = self._moments(inputs, mask)
        outputs = ops.batch_normalization(
            x=inputs,
            mean=mean,
            variance=variance,
            axis=self.axis,
            offset=ops.cast(self.beta, compute_dtype) if self.center else None,
            scale=ops.cast(self.gamma, compute_dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)
