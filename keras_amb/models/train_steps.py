"""The backend-specific part of training, and nothing else.

One training iteration (paper, section 3.5) is written once, in
`_train_sequence`, on the model's step methods:
  main step: `model.main_step_loss` (eq. 5) over `model.step_variables
    ("main")` (every trainable weight), with the main optimizer;
  complement step (with COT, or L_am on the map alone): a fresh forward pass
    with the updated weights, `model.complement_step_loss`, over
    `model.step_variables("complement")`, with the complement optimizer.
Each backend supplies an adapter that only takes a gradient of a step's loss
and applies it (TensorFlow's GradientTape, PyTorch's autograd, JAX's
stateless `value_and_grad`), and reads and writes weights. The force log
(`force_log.py`: which term pushes the map) uses the same adapters.

JAX's step is stateless: its adapter carries the weights' values and each
optimizer's state through the sequence, the state split by
`optimizers.step_states`, which matches each optimizer's own variables.
"""

import contextlib

import keras

from keras_amb import keras_private
from keras_amb import optimizers
from keras_amb.layers.batch_normalization import frozen_statistics
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


def _rescale(before, after, multiplier):
    """`before + multiplier * (after - before)`: an update scaled, whatever
    optimizer made it (the PC centers' learning-rate multiplier)."""
    return before + multiplier * (after - before)


# The step methods of the model, by the name of section 3.5's update.
def _step_loss(model, step):
    return {"main": model.main_step_loss, "complement": model.complement_step_loss}[step]


# === The training iteration, written once ===


def _train_sequence(model, steps):
    """The paper's training iteration on a backend's `steps` adapter.

    `steps.minimize(step, optimizer, variables)` takes one gradient step of
    the loss of `step` (the model's step method) over `variables` and
    returns its `objective.StepLoss`; `steps.read(variables)` and
    `steps.write(variables, values)` read and set weights' values.

    Returns:
        `(outputs, parts)` of the main step, with the complement step's parts.
    """
    centers = model.center_variables
    multiplier = model.center_lr_multiplier
    rescale = bool(centers) and multiplier != 1.0
    before = steps.read(centers) if rescale else None
    main = steps.minimize("main", optimizers.step_optimizer(model.optimizer, "main"),
                          model.step_variables("main"))
    if rescale:
        after = steps.read(centers)
        steps.write(centers, [_rescale(b, a, multiplier) for b, a in zip(before, after)])
    parts = dict(main.parts)
    if model.has_complement_step:
        complement = steps.minimize(
            "complement", optimizers.step_optimizer(model.optimizer, "complement"),
            model.step_variables("complement"))
        parts.update(complement.parts)
    return main.outputs, parts


def _norms(grads_by_term):
    return {name: keras.ops.sqrt(sum(keras.ops.sum(keras.ops.square(g)) for g in grads))
            for name, grads in grads_by_term.items()}


class _VariableSteps:
    """The adapter where the weights are variables (TensorFlow, PyTorch);
    a subclass supplies `gradients(loss_fn, variables)`, which returns the
    gradients of `loss_fn()`'s first value and that call's result."""

    def __init__(self, model, x, y, extra):
        self.model, self.x, self.y, self.extra = model, x, y, extra

    def _loss(self, step, optimizer):
        result = _step_loss(self.model, step)(self.x, self.y, training=True, **self.extra)
        return optimizer.scale_loss(self.per_replica(result.loss)), result

    def per_replica(self, loss):
        return loss

    def minimize(self, step, optimizer, variables):
        grads, (_, result) = self.gradients(lambda: self._loss(step, optimizer), variables)
        self.apply(optimizer, grads, variables)
        return result

    def apply(self, optimizer, grads, variables):
        optimizer.apply(grads, variables)

    def read(self, variables):
        return [keras.ops.copy(keras.ops.convert_to_tensor(v)) for v in variables]

    def write(self, variables, values):
        for variable, value in zip(variables, values):
            variable.assign(value)

    def term_norms(self, step, variables):
        """The norm of each weighted term's gradient over `variables`, from
        one forward pass of `step` (batch-norm statistics untouched)."""
        def terms_fn():
            with frozen_statistics():
                return _step_loss(self.model, step)(self.x, self.y, training=True,
                                                    **self.extra).terms

        return _norms(gradients.term_gradients(terms_fn, variables))


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
    result = model.eval_loss(x, y, training=False, **extra)
    return model.update_metrics(result.parts, result.outputs, y, extra["sample_weight"])


def _tf_test_step(model, data):
    return _tf_logs(_eval_step(model, data))


def adapter(model, data):
    """The backend's adapter on one batch, `data` as `fit` gives it, on the
    model's current weights (the force log's; on JAX, inside a stateless
    scope such as `compiled.compiled`'s, whose values it reads)."""
    x, y, extra = _unpack(data)
    if _BACKEND == "jax":
        return _JaxSteps(model, x, y, extra,
                         [v.value for v in model.trainable_variables],
                         [v.value for v in model.non_trainable_variables])
    steps = _TensorFlowSteps if _BACKEND == "tensorflow" else _TorchSteps
    return steps(model, x, y, extra)


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


def _jax_stateless_metrics(model, metrics_variables, parts, outputs, y, sample_weight):
    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.update_metrics(parts, outputs, y, sample_weight)
    return logs, [scope.get_current_value(v) for v in model.metrics_variables]


def _jax_scaled(optimizer, optimizer_values, loss):
    """`optimizer.scale_loss(loss)` with the loss scale read from this step's
    optimizer state (a `LossScaleOptimizer` under `mixed_float16`)."""
    if optimizer_values is None:
        return loss
    mapping = list(zip(optimizer.variables, optimizer_values))
    with keras.StatelessScope(state_mapping=mapping):
        return optimizer.scale_loss(loss)


class _JaxSteps:
    """The adapter where the weights are explicit state (JAX): it holds this
    step's trainable and non-trainable values and each step's optimizer
    state (`optimizers.step_states`), and replaces them as the sequence
    runs. A weight is found by identity among the model's trainable
    variables."""

    def __init__(self, model, x, y, extra, trainable, non_trainable, states=None):
        self.model, self.x, self.y, self.extra = model, x, y, extra
        self.trainable = list(trainable)
        self.non_trainable = non_trainable
        self.states = states  # step name -> its optimizer's values
        self.position = {id(v): i for i, v in enumerate(model.trainable_variables)}

    def _indices(self, variables):
        return [self.position[id(v)] for v in variables]

    def _loss_fn(self, step, indices, optimizer=None, state=None, frozen=False):
        """The step's loss as a function of the values at `indices` and the
        non-trainable values: `(scaled loss, (StepLoss, non-trainable))`."""
        def loss_fn(subset, non_trainable):
            trainable = list(self.trainable)
            for i, value in zip(indices, subset):
                trainable[i] = value
            with frozen_statistics() if frozen else contextlib.nullcontext():
                result, non_trainable = gradients.stateless(
                    self.model, trainable, non_trainable,
                    lambda: _step_loss(self.model, step)(self.x, self.y, training=True,
                                                         **self.extra))
            # Gradients of the scaled loss: the loss-scale optimizer divides
            # them by the same scale.
            return _jax_scaled(optimizer, state, result.loss), (result, non_trainable)

        return loss_fn

    def minimize(self, step, optimizer, variables):
        import jax

        indices = self._indices(variables)
        state = self.states[step]
        loss_fn = self._loss_fn(step, indices, optimizer, state)
        (_, (result, self.non_trainable)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(self.read(variables), self.non_trainable)
        subset, self.states[step] = optimizer.stateless_apply(
            state, grads, self.read(variables))
        self.write(variables, subset)
        return result

    def read(self, variables):
        return [self.trainable[i] for i in self._indices(variables)]

    def write(self, variables, values):
        for i, value in zip(self._indices(variables), values):
            self.trainable[i] = value

    def term_norms(self, step, variables):
        """As `_VariableSteps.term_norms`: one forward pass, each term
        pulled back through it."""
        import jax
        import jax.numpy as jnp

        indices = self._indices(variables)
        loss_fn = self._loss_fn(step, indices, frozen=True)

        def terms_fn(subset):
            return loss_fn(subset, self.non_trainable)[1][0].terms

        terms, pullback = jax.vjp(terms_fn, self.read(variables))
        return _norms({
            name: pullback({k: jnp.asarray(k == name, v.dtype) for k, v in terms.items()})[0]
            for name in terms})


def _jax_train_step(model, state, data):
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y, extra = _unpack(data)
    states = optimizers.step_states(model.optimizer, optimizer_variables)
    steps = _JaxSteps(model, x, y, extra, trainable, non_trainable, states)
    outputs, parts = _train_sequence(model, steps)
    optimizer_variables = optimizers.join_step_states(model.optimizer, steps.states)
    logs, metrics_variables = _jax_stateless_metrics(
        model, metrics_variables, parts, outputs, y, extra["sample_weight"]
    )
    return logs, (steps.trainable, steps.non_trainable, optimizer_variables, metrics_variables)


def _jax_test_step(model, state, data):
    trainable, non_trainable, metrics_variables = state
    x, y, extra = _unpack(data)
    result, non_trainable = gradients.stateless(
        model, trainable, non_trainable,
        lambda: model.eval_loss(x, y, training=False, **extra))
    logs, metrics_variables = _jax_stateless_metrics(
        model, metrics_variables, result.parts, result.outputs, y, extra["sample_weight"]
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
