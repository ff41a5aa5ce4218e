"""Data parallelism for `keras-amb train --distribute`, by backend."""

import contextlib
import os

import keras

from keras_amb.errors import DistributionError  # noqa: F401 (re-exported)


def distribution_scope(log=print):
    """The data-parallel context of `--distribute`.

    TensorFlow: `MultiWorkerMirroredStrategy` when `TF_CONFIG` names a
    cluster, else `MirroredStrategy` over the local GPUs (or logical CPUs).
    JAX: `keras.distribution.DataParallel` over every device (several hosts
    once `keras.distribution.initialize()` has read `KERAS_DISTRIBUTION_*`).
    The batch size is global, split across devices; the learning rate is not
    rescaled.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if os.environ.get("TF_CONFIG"):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            strategy = tf.distribute.MirroredStrategy()
        log(f"Data-parallel on {strategy.num_replicas_in_sync} replica(s) "
            f"({type(strategy).__name__})")
        return strategy.scope()
    if backend == "jax":
        if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
            # Several hosts: Keras reads the job addresses, the number of
            # processes and this process's id from KERAS_DISTRIBUTION_*.
            keras.distribution.initialize()
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        log(f"Data-parallel on {len(devices)} JAX device(s) (keras.distribution.DataParallel)")
        return contextlib.nullcontext()
    raise DistributionError(
        "--distribute uses TensorFlow's strategies or JAX's DataParallel; "
        f"the {backend} backend is not supported"
    )
