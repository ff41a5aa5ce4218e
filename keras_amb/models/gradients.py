"""Gradients on each backend: the one backend-specific primitive.

`tf_gradients` and `torch_gradients` give the gradient of a loss over a set
of Keras variables (TensorFlow's GradientTape, PyTorch's autograd; JAX's
stateless gradient is taken in `train_steps._JaxSteps`, which must thread
the state itself). On them: the training adapters and the force log
(`train_steps.py`), and the gradient of a score over an input (Grad-CAM,
`input_gradient`).
"""

import keras

_BACKEND = keras.backend.backend()


def _fill_missing(grads, variables):
    return [
        g if g is not None else keras.ops.zeros_like(v) for g, v in zip(grads, variables)
    ]


def tf_gradients(loss_fn, variables):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        result = loss_fn()
        loss = result[0] if isinstance(result, tuple) else result
    return _fill_missing(tape.gradient(loss, variables), variables), result


def torch_gradients(loss_fn, variables):
    import torch

    result = loss_fn()
    loss = result[0] if isinstance(result, tuple) else result
    grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
    return _fill_missing(list(grads), variables), result


def stateless(model, trainable, non_trainable, fn):
    """`fn()` run on explicit values of `model`'s weights (JAX), as
    `Layer.stateless_call` runs `call`: returns `fn()`'s result and the
    non-trainable values after it (batch-norm moving statistics)."""
    mapping = list(zip(model.trainable_variables, trainable)) + list(
        zip(model.non_trainable_variables, non_trainable))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        result = fn()
    return result, [scope.get_current_value(v) for v in model.non_trainable_variables]


# === Which force drives the map ===


def variable_gradients(loss_fn, variables):
    """Gradients of `loss_fn()` (a scalar) over `variables`, on the current
    backend; None-free (zeros where a variable does not feed the loss)."""
    if _BACKEND == "jax":
        import jax

        def stateless(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        return jax.grad(stateless)([v.value for v in variables])
    gradient = tf_gradients if _BACKEND == "tensorflow" else torch_gradients
    return gradient(loss_fn, variables)[0]


def term_gradients(terms_fn, variables):
    """Gradients over `variables` of each scalar of `terms_fn()` (a dict of
    name to scalar), from one forward pass: TensorFlow keeps its tape,
    PyTorch its graph. (JAX's is one compiled program over the model's
    state, `train_steps._JaxSteps.term_norms`.) Returns a dict of name
    to a None-free list of gradients."""
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape(persistent=True) as tape:
            terms = terms_fn()
        grads = {name: _fill_missing(tape.gradient(value, variables), variables)
                 for name, value in terms.items()}
        del tape
        return grads
    import torch

    terms = terms_fn()
    values = [v.value for v in variables]
    return {
        name: _fill_missing(list(torch.autograd.grad(
            value, values, retain_graph=True, allow_unused=True)), variables)
        for name, value in terms.items()
    }


# === Input gradients (Grad-CAM) ===


def input_gradient(fn, x):
    """`d sum(fn(x)) / dx` for a tensor `x`, on the current backend."""
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(fn(x))
        return tape.gradient(y, x)
    if _BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        return jax.grad(lambda v: jnp.sum(fn(v)))(x)
    import torch

    x = keras.ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
    # Only the input's gradient: no weight gradients are computed (nor
    # accumulated into the model's .grad), which also avoids PyTorch's CPU
    # convolution weight-gradient failure on a batch of one.
    (gradient,) = torch.autograd.grad(torch.sum(fn(x)), [x])
    return gradient
