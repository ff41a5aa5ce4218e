"""The backend-specific part of training and explaining, and nothing else.

Each backend computes gradients its own way (TensorFlow's GradientTape,
PyTorch's autograd, JAX's stateless `value_and_grad`); the forward pass, the
losses and the metrics are the model's backend-agnostic methods:
`model(x, mode=...)`, `model.compute_losses(...)`, `model.update_metrics(...)`.

One training iteration (paper, section 3.5):
  main step: eq. 5 over all trainable weights, main optimizer;
  complement step (COT on): a fresh forward pass with the updated weights,
    the AMB complement entropy, a step of the complement optimizer over
    `model.complement_variables` (the weights that feed the AMB).

Also here: compiled forward passes for explanations (`compiled_forward`) and
input gradients (`input_gradient`, Grad-CAM), which need the same per-backend
plumbing.
"""

import weakref

import keras

from keras_amb import optimizers

_BACKEND = keras.backend.backend()


def default_jit_compile():
    """XLA where it is the fast path: always on JAX, on TensorFlow with a GPU.

    XLA on a CPU was measured 1.6-4.6x slower than plain TensorFlow for
    ResNet-50 and 1.5-1.9x slower for resnet_tiny
    (benchmarks/results/cpu_2core_peer_tiny.md); PyTorch runs eagerly.
    """
    if _BACKEND == "jax":
        return True
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def _unpack(data):
    """`(x, y, extra)`; `extra` holds the loss arguments besides outputs and
    labels: sample weights (from `sample_weight` or `class_weight`) and the
    corrected attention maps of the human-knowledge baseline."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    extra = {"sample_weight": sample_weight}
    if isinstance(x, dict):
        extra["attention_target"] = x.get("attention_target")
        extra["has_attention_target"] = x.get("has_attention_target")
    return x, y, extra


def _fill_missing(grads, variables):
    return [
        g if g is not None else keras.ops.zeros_like(v) for g, v in zip(grads, variables)
    ]


_INDICES = weakref.WeakKeyDictionary()


def _indices(model):
    """Positions in `model.trainable_variables` of the complement variables
    and of the PC centres (computed once per model)."""
    if model not in _INDICES:
        position = {id(v): i for i, v in enumerate(model.trainable_variables)}
        _INDICES[model] = (
            [position[id(v)] for v in model.complement_variables],
            [position[id(v)] for v in model.center_variables],
        )
    return _INDICES[model]


def _rescale(before, after, multiplier):
    """`before + multiplier * (after - before)`: an update scaled, whatever
    optimizer made it (the PC centres' learning-rate multiplier)."""
    return before + multiplier * (after - before)


def _apply_main(model, optimizer, grads, variables):
    """The main optimizer's step, with the centres' update scaled by
    `model.center_lr_multiplier` (TensorFlow and PyTorch: variables)."""
    centers = model.center_variables
    multiplier = model.center_lr_multiplier
    if not centers or multiplier == 1.0:
        optimizer.apply(grads, variables)
        return
    before = [keras.ops.copy(keras.ops.convert_to_tensor(v)) for v in centers]
    optimizer.apply(grads, variables)
    for variable, old in zip(centers, before):
        variable.assign(_rescale(old, keras.ops.convert_to_tensor(variable), multiplier))


# === TensorFlow ===


def _per_replica(loss):
    """Under tf.distribute, each replica's share of the global mean loss
    (the optimizer sums the replicas' gradients)."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def _tf_logs(logs):
    """Under MultiWorkerMirroredStrategy on several workers, Keras reduces
    each log over axis 0 as if it held one value per example; scalar logs
    get that axis (a mean over one value is the value)."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.extended._in_multi_worker_mode()
    ):
        return {k: tf.reshape(v, (1,)) for k, v in logs.items()}
    return logs


def _tf_step(model, x, y, extra, mode, optimizer, variables, apply):
    """One gradient step of `mode` over `variables`; `(outputs, parts)`."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        outputs = model(x, training=True, mode=mode)
        loss, parts = model.compute_losses(outputs, y, mode, **extra)
        scaled = optimizer.scale_loss(_per_replica(loss))
    apply(_fill_missing(tape.gradient(scaled, variables), variables))
    return outputs, parts


def _tf_train_step(model, data):
    x, y, extra = _unpack(data)
    main = optimizers.main_optimizer(model.optimizer)
    variables = model.trainable_variables
    outputs, parts = _tf_step(
        model, x, y, extra, "main", main, variables,
        lambda grads: _apply_main(model, main, grads, variables),
    )
    if model.has_second_step:
        complement = optimizers.complement_optimizer(model.optimizer)
        subset = model.complement_variables
        _, parts_b = _tf_step(
            model, x, y, extra, "complement", complement, subset,
            lambda grads: complement.apply(grads, subset),
        )
        parts.update(parts_b)
    return _tf_logs(model.update_metrics(parts, outputs, y, extra["sample_weight"]))


def _eval_step(model, data):
    x, y, extra = _unpack(data)
    outputs = model(x, training=False, mode="eval")
    _, parts = model.compute_losses(outputs, y, "eval", **extra)
    return model.update_metrics(parts, outputs, y, extra["sample_weight"])


def _tf_test_step(model, data):
    return _tf_logs(_eval_step(model, data))


# === PyTorch ===


def _torch_step(model, x, y, extra, mode, optimizer, variables, apply):
    """One gradient step of `mode` over `variables`; `(outputs, parts)`."""
    import torch

    model.zero_grad()
    outputs = model(x, training=True, mode=mode)
    loss, parts = model.compute_losses(outputs, y, mode, **extra)
    optimizer.scale_loss(loss).backward()
    grads = _fill_missing([v.value.grad for v in variables], variables)
    with torch.no_grad():
        apply(grads)
    return outputs, parts


def _torch_train_step(model, data):
    import torch

    x, y, extra = _unpack(data)
    main = optimizers.main_optimizer(model.optimizer)
    variables = model.trainable_variables
    outputs, parts = _torch_step(
        model, x, y, extra, "main", main, variables,
        lambda grads: _apply_main(model, main, grads, variables),
    )
    if model.has_second_step:
        complement = optimizers.complement_optimizer(model.optimizer)
        subset = model.complement_variables
        _, parts_b = _torch_step(
            model, x, y, extra, "complement", complement, subset,
            lambda grads: complement.apply(grads, subset),
        )
        parts.update(parts_b)
    with torch.no_grad():
        parts = {k: v.detach() for k, v in parts.items()}
        outputs = {k: v.detach() for k, v in outputs.items()}
        return model.update_metrics(parts, outputs, y, extra["sample_weight"])


def _torch_test_step(model, data):
    import torch

    with torch.no_grad():
        return _eval_step(model, data)


# === JAX ===


def _jax_stateless_metrics(model, metrics_variables, parts, outputs, y, sample_weight):
    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.update_metrics(parts, outputs, y, sample_weight)
    return logs, [scope.get_current_value(v) for v in model.metrics_variables]


def _jax_scaled(optimizer, optimizer_values, loss):
    """`optimizer.scale_loss(loss)` with the loss scale read from this step's
    optimizer state (a `LossScaleOptimizer` under `mixed_float16`)."""
    mapping = list(zip(optimizer.variables, optimizer_values))
    with keras.StatelessScope(state_mapping=mapping):
        return optimizer.scale_loss(loss)


def _jax_train_step(model, state, data):
    import jax

    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y, extra = _unpack(data)
    main = optimizers.main_optimizer(model.optimizer)
    n_main = len(main.variables)
    main_state, complement_state = optimizer_variables[:n_main], optimizer_variables[n_main:]

    def loss_fn(trainable, non_trainable, mode, optimizer, optimizer_values):
        outputs, non_trainable = model.stateless_call(
            trainable, non_trainable, x, training=True, mode=mode
        )
        loss, parts = model.compute_losses(outputs, y, mode, **extra)
        # Gradients of the scaled loss: the loss-scale optimizer divides them
        # by the same scale.
        return _jax_scaled(optimizer, optimizer_values, loss), (parts, outputs, non_trainable)

    (_, (parts, outputs, non_trainable)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(trainable, non_trainable, "main", main, main_state)
    new_trainable, main_state = main.stateless_apply(main_state, grads, trainable)
    complement_indices, center_indices = _indices(model)
    if model.center_lr_multiplier != 1.0:
        for i in center_indices:
            new_trainable[i] = _rescale(
                trainable[i], new_trainable[i], model.center_lr_multiplier
            )
    trainable = list(new_trainable)
    if model.has_second_step:
        complement = optimizers.complement_optimizer(model.optimizer)
        subset = [trainable[i] for i in complement_indices]

        def complement_loss(subset, non_trainable):
            full = list(trainable)
            for i, value in zip(complement_indices, subset):
                full[i] = value
            return loss_fn(full, non_trainable, "complement", complement, complement_state)

        (_, (parts_b, _, non_trainable)), grads = jax.value_and_grad(
            complement_loss, has_aux=True
        )(subset, non_trainable)
        subset, complement_state = complement.stateless_apply(
            complement_state, grads, subset
        )
        for i, value in zip(complement_indices, subset):
            trainable[i] = value
        parts.update(parts_b)
    optimizer_variables = list(main_state) + list(complement_state)
    logs, metrics_variables = _jax_stateless_metrics(
        model, metrics_variables, parts, outputs, y, extra["sample_weight"]
    )
    return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)


def _jax_test_step(model, state, data):
    trainable, non_trainable, metrics_variables = state
    x, y, extra = _unpack(data)
    outputs, non_trainable = model.stateless_call(
        trainable, non_trainable, x, training=False, mode="eval"
    )
    _, parts = model.compute_losses(outputs, y, "eval", **extra)
    logs, metrics_variables = _jax_stateless_metrics(
        model, metrics_variables, parts, outputs, y, extra["sample_weight"]
    )
    return logs, (trainable, non_trainable, metrics_variables)


_STEPS = {
    "tensorflow": (_tf_train_step, _tf_test_step),
    "torch": (_torch_train_step, _torch_test_step),
    "jax": (_jax_train_step, _jax_test_step),
}


def _steps():
    if _BACKEND not in _STEPS:
        raise ValueError(
            f"keras-amb trains on tensorflow, jax or torch. Received: KERAS_BACKEND={_BACKEND!r}"
        )
    return _STEPS[_BACKEND]


def train_step(model, *args):
    return _steps()[0](model, *args)


def test_step(model, *args):
    return _steps()[1](model, *args)


# === Which force drives the map ===


def variable_gradients(loss_fn, variables):
    """Gradients of `loss_fn()` (a scalar) over `variables`, on the current
    backend; None-free (zeros where a variable does not feed the loss)."""
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        return _fill_missing(tape.gradient(loss, variables), variables)
    if _BACKEND == "jax":
        import jax

        def stateless(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        return jax.grad(stateless)([v.value for v in variables])
    import torch

    loss = loss_fn()
    grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
    return _fill_missing(list(grads), variables)


def term_gradient_norms(model, data, variables):
    """The norm of the gradient that each weighted loss term sends to
    `variables` (e.g. the attention map's weights), on one batch.

    The terms are those each step minimizes (`model.weighted_terms`): eq. 5's
    for the main step, COT's (or L_am's) for the second step. Forward passes
    run in training mode without touching batch-norm moving statistics.

    Returns:
        A dict, term name to a float.
    """
    from keras_amb.layers.batch_normalization import frozen_statistics

    x, y, extra = _unpack(data)
    modes = ["main"] + (["complement"] if model.has_second_step else [])
    norms = {}
    for mode in modes:
        probe = model(x, training=False, mode=mode)
        _, parts = model.compute_losses(probe, y, mode, **extra)
        for name in model.weighted_terms(parts, mode):

            def loss_fn(mode=mode, name=name):
                with frozen_statistics():
                    outputs = model(x, training=True, mode=mode)
                _, parts = model.compute_losses(outputs, y, mode, **extra)
                return model.weighted_terms(parts, mode)[name]

            grads = variable_gradients(loss_fn, variables)
            total = sum(float(keras.ops.sum(keras.ops.square(g))) for g in grads)
            norms[name] = total**0.5
    return norms


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


# === Compiled inference ===

_COMPILED = weakref.WeakKeyDictionary()


def compiled(model, name, fn):
    """`fn(model, *arrays)` compiled once per model and backend.

    TensorFlow: a `tf.function` (XLA as `model.jit_compile`); JAX: `jax.jit`
    over the model's current weights (read at each call, so training in
    between is seen); PyTorch: run eagerly without autograd bookkeeping
    unless `fn` asks for gradients itself. Used for explanations, which must
    cost about as much as the forward pass they come from.
    """
    cache = _COMPILED.setdefault(model, {})
    if name in cache:
        return cache[name]
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        graph = tf.function(
            lambda *args: fn(model, *args),
            jit_compile=bool(getattr(model, "jit_compile", False)),
            reduce_retracing=True,
        )
        cache[name] = graph
    elif _BACKEND == "jax":
        import jax

        def stateless(trainable, non_trainable, *args):
            mapping = list(zip(model.trainable_variables, trainable)) + list(
                zip(model.non_trainable_variables, non_trainable)
            )
            with keras.StatelessScope(state_mapping=mapping):
                return fn(model, *args)

        jitted = jax.jit(stateless)

        def call(*args):
            return jitted(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                *args,
            )

        cache[name] = call
    else:
        # Tensors, not numpy arrays: `tensor * ndarray` with a tensor that
        # requires grad would make numpy convert the tensor and fail.
        cache[name] = lambda *args: fn(model, *[keras.ops.convert_to_tensor(a) for a in args])
    return cache[name]
