import contextlib
import threading

import keras
from keras import ops

from keras_amb.layers import kernels

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
    """`keras.layers.BatchNormalization` that honours `frozen_statistics()`,
    with a fused kernel on TensorFlow and PyTorch.

    Same arguments, weights and behaviour as the Keras layer, except that in
    training mode under `frozen_statistics()` it normalises with the batch's
    statistics without updating the moving ones. On 4D inputs normalised over
    the last axis, TensorFlow and PyTorch run one fused kernel
    (`layers.kernels.batch_norm`) instead of Keras's composed ops; the moving
    averages are updated exactly as Keras does (with the biased variance).

    It keeps Keras's class name for the reason `layers.Conv2D` gives (saved
    weights are found by it); write `batch_normalization.BatchNormalization`.

    Example:
    >>> bn = BatchNormalization(momentum=0.9)
    >>> _ = bn(keras.ops.ones((4, 3)), training=True)
    >>> round(float(bn.moving_mean[0]), 3)
    0.1
    """

    def call(self, inputs, training=None, mask=None):
        training = bool(training and self.trainable)
        fused = None
        if (
            mask is None and not self.renorm and self.center and self.scale
            and self.axis in (-1, len(inputs.shape) - 1)
        ):
            x = ops.cast(inputs, "float32")
            fused = kernels.batch_norm(
                x, ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32"),
                self.epsilon, training,
                ops.cast(self.moving_mean, "float32"),
                ops.cast(self.moving_variance, "float32"),
            )
        if fused is None:
            if training and statistics_frozen():
                return self._normalise_without_update(inputs, mask)
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance = fused
        if training and not statistics_frozen():
            mean, variance = ops.stop_gradient(mean), ops.stop_gradient(variance)
            momentum = self.momentum
            self.moving_mean.assign(
                ops.cast(self.moving_mean, "float32") * momentum + mean * (1.0 - momentum)
            )
            self.moving_variance.assign(
                ops.cast(self.moving_variance, "float32") * momentum
                + variance * (1.0 - momentum)
            )
        return ops.cast(outputs, self.compute_dtype)

    def _normalise_without_update(self, inputs, mask):
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
