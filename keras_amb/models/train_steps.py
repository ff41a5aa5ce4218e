"""The backend-specific part of training and explaining, and nothing else.

Each backend computes gradients its own way (TensorFlow's GradientTape,
PyTorch's autograd, JAX's stateless `value_and_grad`); the forward pass, the
losses and the metrics are the model's backend-agnostic methods:
`model.forward_step(x, step)`, `model.compute_losses(...)`,
`model.update_metrics(...)`.

One training iteration (paper, section 3.5):
  main step: eq. 5 over all trainable weights, main optimizer;
  complement step (COT on): a fresh forward pass with the updated weights,
    the AMB complement entropy, a step of the complement optimizer over
    `model.complement_variables` (the weights that feed the AMB).
`_train_sequence` writes that iteration once; each backend only supplies an
adapter that takes a gradient step over a set of weights and reads and
writes them.

Each adapter's gradient comes from `models/gradients.py`, which also gives
the gradients explanations and the force log need (`input_gradient` for
Grad-CAM, `term_gradients` for the force log). Compiled inference (for
explanations and PC's centers) is in `models/compiled.py`.

Why this module is long (about 450 lines): the three backends' adapters
are each small (20-60 lines), but JAX's stateless step must carry the
variables, the optimizers' and the metrics' state through the sequence
itself, which the other two get from their variables, and JAX's force log
is compiled over that state too (eagerly, JAX compiles each operation).
"""

import weakref

import keras

from keras_amb import keras_private
from keras_amb import optimizers
from keras_amb.models import gradients

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


_INDICES = weakref.WeakKeyDictionary()


def _positions(model, variables):
    """Positions of `variables` in `model.trainable_variables`."""
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}
    return [position[id(v)] for v in variables]


def _indices(model):
    """Positions in `model.trainable_variables` of the complement variables
    and of the PC centers (computed once per model)."""
    if model not in _INDICES:
        _INDICES[model] = (_positions(model, model.complement_variables),
                           _positions(model, model.center_variables))
    return _INDICES[model]


def _rescale(before, after, multiplier):
    """`before + multiplier * (after - before)`: an update scaled, whatever
    optimizer made it (the PC centers' learning-rate multiplier)."""
    return before + multiplier * (after - before)


# === The training iteration, written once ===


def _train_sequence(model, steps):
    """The paper's training iteration on a backend's `steps` adapter.

    `steps.minimize(step, optimizer, indices)` takes one gradient step of
    the loss of `step` over the trainable variables at `indices` (None: all)
    and returns `(outputs, parts)`; `steps.read(indices)` and
    `steps.write(indices, values)` read and set trainable values. The
    adapters differ only in how a gradient is taken and where the weights
    live (variables on TensorFlow and PyTorch, explicit state on JAX).

    Returns:
        `(outputs, parts)` of the main step, with the complement step's parts.
    """
    complement_indices, center_indices = _indices(model)
    multiplier = model.center_lr_multiplier
    rescale = bool(center_indices) and multiplier != 1.0
    before = steps.read(center_indices) if rescale else None
    outputs, parts = steps.minimize("main", optimizers.main_optimizer(model.optimizer), None)
    if rescale:
        after = steps.read(center_indices)
        steps.write(center_indices, [_rescale(b, a, multiplier) for b, a in zip(before, after)])
    if model.has_complement_step:
        complement = optimizers.complement_optimizer(model.optimizer)
        _, second = steps.minimize("complement", complement, complement_indices)
        parts.update(second)
    return outputs, parts


class _VariableSteps:
    """The adapter where the weights are variables (TensorFlow, PyTorch);
    a subclass supplies `gradients(loss_fn, variables)`, which returns the
    gradients of `loss_fn()`'s first value and that call's result."""

    def __init__(self, model, x, y, extra):
        self.model, self.x, self.y, self.extra = model, x, y, extra

    def _variables(self, indices):
        variables = self.model.trainable_variables
        return variables if indices is None else [variables[i] for i in indices]

    def _loss(self, step, optimizer):
        outputs = self.model.forward_step(self.x, step, training=True)
        loss, parts = self.model.compute_losses(outputs, self.y, step, **self.extra)
        return optimizer.scale_loss(self.per_replica(loss)), outputs, parts

    def per_replica(self, loss):
        return loss

    def minimize(self, step, optimizer, indices):
        variables = self._variables(indices)
        grads, (_, outputs, parts) = self.gradients(lambda: self._loss(step, optimizer),
                                                    variables)
        self.apply(optimizer, grads, variables)
        return outputs, parts

    def apply(self, optimizer, grads, variables):
        optimizer.apply(grads, variables)

    def read(self, indices):
        return [keras.ops.copy(keras.ops.convert_to_tensor(v)) for v in self._variables(indices)]

    def write(self, indices, values):
        for variable, value in zip(self._variables(indices), values):
            variable.assign(value)


# === TensorFlow ===


class _TensorFlowSteps(_VariableSteps):
    gradients = staticmethod(gradients.tf_gradients)

    def per_replica(self, loss):
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
        keras_private.in_multi_worker_mode(strategy)
    ):
        return {k: tf.reshape(v, (1,)) for k, v in logs.items()}
    return logs


def _tf_train_step(model, data):
    x, y, extra = _unpack(data)
    outputs, parts = _train_sequence(model, _TensorFlowSteps(model, x, y, extra))
    return _tf_logs(model.update_metrics(parts, outputs, y, extra["sample_weight"]))


def _eval_step(model, data):
    x, y, extra = _unpack(data)
    outputs = model.forward_step(x, "eval", training=False)
    _, parts = model.compute_losses(outputs, y, "eval", **extra)
    return model.update_metrics(parts, outputs, y, extra["sample_weight"])


def _tf_test_step(model, data):
    return _tf_logs(_eval_step(model, data))


# === PyTorch ===


class _TorchSteps(_VariableSteps):
    gradients = staticmethod(gradients.torch_gradients)

    def apply(self, optimizer, grads, variables):
        import torch

        with torch.no_grad():
            optimizer.apply(grads, variables)


def _torch_train_step(model, data):
    import torch

    x, y, extra = _unpack(data)
    outputs, parts = _train_sequence(model, _TorchSteps(model, x, y, extra))
    with torch.no_grad():
        parts = {k: v.detach() for k, v in parts.items()}
        outputs = {k: v.detach() for k, v in outputs.items()}
        return model.update_metrics(parts, outputs, y, extra["sample_weight"])


def _torch_test_step(model, data):
    import torch

    with torch.no_grad():
        return _eval_step(model, data)


# === JAX ===


def _jax_forward_step(model, trainable, non_trainable, x, step, training):
    """`model.forward_step(x, step)` on explicit weights: the outputs and
    the non-trainable values after the pass."""
    return gradients.stateless(model, trainable, non_trainable,
                               lambda: model.forward_step(x, step, training=training))


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


class _JaxSteps:
    """The adapter where the weights are explicit state (JAX): it holds this
    step's trainable and non-trainable values and each optimizer's state,
    and replaces them as the sequence runs."""

    def __init__(self, model, x, y, extra, trainable, non_trainable, optimizer_states):
        self.model, self.x, self.y, self.extra = model, x, y, extra
        self.trainable = list(trainable)
        self.non_trainable = non_trainable
        self.optimizer_states = optimizer_states  # id(optimizer) -> its values

    def minimize(self, step, optimizer, indices):
        import jax

        if indices is None:
            indices = list(range(len(self.trainable)))
        state = self.optimizer_states[id(optimizer)]

        def loss_fn(subset, non_trainable):
            trainable = list(self.trainable)
            for i, value in zip(indices, subset):
                trainable[i] = value
            outputs, non_trainable = _jax_forward_step(
                self.model, trainable, non_trainable, self.x, step, training=True
            )
            loss, parts = self.model.compute_losses(outputs, self.y, step, **self.extra)
            # Gradients of the scaled loss: the loss-scale optimizer divides
            # them by the same scale.
            return _jax_scaled(optimizer, state, loss), (outputs, parts, non_trainable)

        (_, (outputs, parts, self.non_trainable)), grads = jax.value_and_grad(
            loss_fn, has_aux=True
        )(self.read(indices), self.non_trainable)
        subset, self.optimizer_states[id(optimizer)] = optimizer.stateless_apply(
            state, grads, self.read(indices)
        )
        self.write(indices, subset)
        return outputs, parts

    def read(self, indices):
        return [self.trainable[i] for i in indices]

    def write(self, indices, values):
        for i, value in zip(indices, values):
            self.trainable[i] = value


def _jax_train_step(model, state, data):
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y, extra = _unpack(data)
    main = optimizers.main_optimizer(model.optimizer)
    complement = optimizers.complement_optimizer(model.optimizer)
    n_main = len(main.variables)
    states = {id(main): optimizer_variables[:n_main]}
    if complement is not None:
        states[id(complement)] = optimizer_variables[n_main:]
    steps = _JaxSteps(model, x, y, extra, trainable, non_trainable, states)
    outputs, parts = _train_sequence(model, steps)
    optimizer_variables = list(states[id(main)]) + (
        list(states[id(complement)]) if complement is not None else [])
    logs, metrics_variables = _jax_stateless_metrics(
        model, metrics_variables, parts, outputs, y, extra["sample_weight"]
    )
    return logs, (steps.trainable, steps.non_trainable, optimizer_variables, metrics_variables)


def _jax_test_step(model, state, data):
    trainable, non_trainable, metrics_variables = state
    x, y, extra = _unpack(data)
    outputs, non_trainable = _jax_forward_step(
        model, trainable, non_trainable, x, "eval", training=False
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


def term_gradient_norms(model, data, variables):
    """The norm of the gradient that each weighted loss term sends to
    `variables` (e.g. the attention map's weights), on one batch.

    The terms are those each step minimizes (`model.weighted_terms`): eq. 5's
    for the main step, COT's (or L_am's) for the complement step. Forward passes
    run in training mode without touching batch-norm moving statistics.

    Returns:
        A dict, term name to a float.
    """
    from keras_amb.layers.batch_normalization import frozen_statistics

    steps = ["main"] + (["complement"] if model.has_complement_step else [])
    if _BACKEND == "jax":
        norms = _jax_term_gradient_norms(model, variables, tuple(steps))(data)
        return {name: float(value) for name, value in norms.items()}
    x, y, extra = _unpack(data)
    norms = {}
    for step in steps:

        def terms_fn(step=step):
            with frozen_statistics():
                outputs = model.forward_step(x, step, training=True)
            _, parts = model.compute_losses(outputs, y, step, **extra)
            return model.weighted_terms(parts, step)

        # One forward pass per step, each term pulled back through it.
        for name, grads in gradients.term_gradients(terms_fn, variables).items():
            total = sum(float(keras.ops.sum(keras.ops.square(g))) for g in grads)
            norms[name] = total**0.5
    return norms


def _jax_term_gradient_norms(model, variables, steps):
    """`term_gradient_norms` on JAX as one compiled program per model
    (`compiled.compiled`), run on the model's current weights. Run eagerly,
    JAX compiled each of the few hundred operations of the forward and
    backward passes on first use (10-12 s of a tiny CLI training on the
    2-core CPU)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from keras_amb.layers.batch_normalization import frozen_statistics
    from keras_amb.models import compiled

    positions = _positions(model, variables)

    def norms(model, data):
        # Inside `compiled`'s stateless scope: the weights read here are the
        # compiled program's inputs.
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        x, y, extra = _unpack(data)
        result = {}
        for step in steps:

            def terms_fn(selected, step=step):
                values = list(trainable)
                for i, value in zip(positions, selected):
                    values[i] = value
                with frozen_statistics():
                    outputs, _ = _jax_forward_step(model, values, non_trainable, x, step,
                                                   training=True)
                _, parts = model.compute_losses(outputs, y, step, **extra)
                return model.weighted_terms(parts, step)

            # One forward pass per step, each term pulled back through it.
            terms, pullback = jax.vjp(terms_fn, [trainable[i] for i in positions])
            for name in terms:
                cotangent = {k: jnp.asarray(k == name, v.dtype) for k, v in terms.items()}
                grads = pullback(cotangent)[0]
                result[name] = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in grads))
        return result

    program = compiled.compiled(model, f"term_gradient_norms{steps}{positions}", norms)
    return lambda data: program(
        keras.tree.map_structure(lambda a: None if a is None else np.asarray(a), data))
