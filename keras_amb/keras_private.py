"""Every use of Keras's (and TensorFlow's) private API, in one place.

Each function says why keras-amb needs it. If a Keras release moves one of
these, this module is the only one to change, and its tests
(tests/test_model.py, tests/test_optimizers.py, tests/test_distribute.py)
fail here first.
"""

import keras


def set_metric_direction(metric, direction):
    """Tells Keras whether a metric improves going `"up"` or `"down"`.

    Why: monitoring callbacks (`ModelCheckpoint`, `EarlyStopping` with
    `mode="auto"`) read `metric._direction`; Keras sets it only for the
    metrics it knows by name, and a `Mean` that tracks a loss reads as "up"
    otherwise.
    """
    metric._direction = direction
    return metric


def metric_group(metrics):
    """`metrics` as one Keras metrics list.

    Why: Keras's monitoring callbacks look for a metric's direction only
    inside the lists `compile(metrics=...)` creates
    (`keras.src.trainers.compile_utils.MetricsList`, not public); grouping
    ours the same way lets them infer `mode` for every name the model logs.
    """
    from keras.src.trainers.compile_utils import MetricsList

    class Metrics(MetricsList):
        def result(self):
            return self.get_result()

    return Metrics(metrics, name="keras_amb_metrics")


def torch_optimizer_class(cls):
    """The class Keras really uses for `keras.optimizers.SGD` or `Adam` on
    the torch backend.

    Why: Keras swaps SGD and Adam for faster versions on torch (fused
    `_foreach` updates, `keras.src.backend.torch.optimizers`), but only for
    the exact public classes; a subclass must derive from the swapped class
    to keep that speed.
    """
    from keras.src.backend.torch.optimizers import torch_adam
    from keras.src.backend.torch.optimizers import torch_sgd

    return {keras.optimizers.SGD: torch_sgd.SGD, keras.optimizers.Adam: torch_adam.Adam}[cls]


def in_multi_worker_mode(strategy):
    """Whether a `tf.distribute` strategy spans several workers.

    Why: under `MultiWorkerMirroredStrategy` on several workers Keras reduces
    each log over axis 0, and only this private method of the strategy's
    `extended` says whether that case applies (a one-worker cluster does not
    need the fix).
    """
    return strategy.extended._in_multi_worker_mode()


class BuiltBeforeFit:
    """A mixin for a `keras.Model` that builds itself in `__init__` and its
    optimizers in `compile`: `fit` skips Keras's symbolic build.

    Why: the TensorFlow trainer's `_maybe_symbolic_build` (private) first
    reduces a distributed batch across replicas, which fails under
    `MultiWorkerMirroredStrategy` on several hosts; a model and optimizer
    already built need none of it. Other backends never call it.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self.built and getattr(self, "optimizer", None) is not None and self.optimizer.built:
            return
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
