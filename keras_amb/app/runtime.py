"""Process-wide settings of a training run: seeds, determinism, precision."""

import keras


def configure(seed=0, deterministic=False, mixed_precision=None):
    """Seeds every generator; with `deterministic` on TensorFlow, makes ops
    deterministic (slower); sets the global dtype policy.

    Args:
        seed: int, seeds Python, NumPy and the backend (initialisation,
            dropout); the input pipeline is seeded separately.
        deterministic: bool, `tf.config.experimental.enable_op_determinism()`
            on TensorFlow (other backends: docs/guides/scale.md).
        mixed_precision: None, `"mixed_float16"` or `"mixed_bfloat16"`.
    """
    keras.utils.set_random_seed(int(seed))
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(mixed_precision or "float32")
