"""Compiled forward passes, once per model and backend.

Explanations (`explain/maps`, `explain/evaluation`) must cost about as much
as the forward pass they come from, and PC's centers start at the class
means of features computed over the training split
(`objective.initialize_centers`), so each is compiled once per model: a
`tf.function` on TensorFlow, `jax.jit` on JAX, and PyTorch without autograd
bookkeeping. (Run eagerly, JAX compiles each operation on first use.)

The compiled functions live on the model (`_keras_amb_compiled`, one per
name), so they go when the model goes, and no module holds a cache.
"""

import keras

from keras_amb.models import gradients

_BACKEND = keras.backend.backend()
_ATTRIBUTE = "_keras_amb_compiled"


def compiled(model, name, fn, key=None):
    """`fn(model, *arrays)` compiled once per model, name and backend.

    TensorFlow: a `tf.function` (XLA as `model.jit_compile`); JAX: `jax.jit`
    over the model's current weights (read at each call, so training in
    between is seen); PyTorch: run eagerly without autograd bookkeeping
    unless `fn` asks for gradients itself. Used for explanations, PC's
    centers and, on JAX, the force log (`force_log.term_gradient_norms`).

    Args:
        model: the model whose weights `fn` reads.
        name: str, which function (one per name is kept).
        fn: callable `fn(model, *arrays)`.
        key: optional list of variables `fn` depends on besides the model
            (the force log's): a different list replaces the compiled one.
    """
    cache = model.__dict__.get(_ATTRIBUTE)
    if cache is None:
        cache = {}
        # Past Keras's attribute tracking: a plain dict of functions.
        object.__setattr__(model, _ATTRIBUTE, cache)
    identity = None if key is None else tuple(id(v) for v in key)
    if name in cache and cache[name][0] == identity:
        return cache[name][1]
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        graph = tf.function(
            lambda *args: fn(model, *args),
            jit_compile=bool(getattr(model, "jit_compile", False)),
            reduce_retracing=True,
        )
        function = graph
    elif _BACKEND == "jax":
        import jax

        def stateless(trainable, non_trainable, *args):
            return gradients.stateless(model, trainable, non_trainable,
                                       lambda: fn(model, *args))[0]

        jitted = jax.jit(stateless)

        def call(*args):
            return jitted(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                *args,
            )

        function = call
    else:
        # Tensors, not numpy arrays: `tensor * ndarray` with a tensor that
        # requires grad would make numpy convert the tensor and fail.
        def function(*args):
            return fn(model, *[keras.ops.convert_to_tensor(a) for a in args])

    cache[name] = (identity, function)
    return function
