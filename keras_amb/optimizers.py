"""The optimizers of the paper's train step, and how a model gets them.

- `SGD` and `Adam`: Keras's, with PyTorch's *coupled* weight decay (an L2
  term added to the gradient before momentum), as the official ABN and COT
  code train; Keras's own `weight_decay` is decoupled and, at momentum 0.9,
  about 10x weaker. `AdamW` stays Keras's (decoupled by design).
- `DualOptimizer`: the main optimizer (eq. 5) and COT's complement optimizer
  travel as one Keras optimizer, so both are saved with the model and carried
  through JAX's stateless training.
- `make_optimizer(spec)`: the optimizer of a config's `optimizer:` mapping.
- `for_model` / `build_for_model`: what `AttentionBranchNetwork.compile`
  hands to Keras, and on which weights each optimizer is built.
"""

import keras

from keras_amb import keras_private
from keras_amb.arguments import OPTIMIZER_NAMES as NAMES


class _CoupledWeightDecay:
    """Mixin: weight decay as an L2 gradient term, applied before the update.

    `g <- g + weight_decay * w`, then the optimizer's own update (PyTorch's
    `weight_decay` of SGD and Adam). Every trainable weight decays, as in
    the reference code, except those given to `exclude_from_weight_decay`
    (the PC centers, which the PC authors never decay). Done in `apply`, so Keras's per-backend update code
    (torch's fused `_foreach` steps, JAX's stateless one) runs unchanged.
    """

    def __init__(self, *args, weight_decay=None, **kwargs):
        super().__init__(*args, weight_decay=None, **kwargs)
        if weight_decay is not None and weight_decay < 0:
            raise ValueError(
                f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay!r}"
            )
        self.coupled_weight_decay = weight_decay

    def apply(self, grads, trainable_variables=None):
        decay = self.coupled_weight_decay
        if decay:
            # Without explicit variables (JAX's stateless apply), the built
            # ones, read through the enclosing stateless scope.
            variables = (
                self._trainable_variables
                if trainable_variables is None
                else trainable_variables
            )
            grads = [
                g if g is None or not self._use_weight_decay(v)
                else g + keras.ops.cast(decay, g.dtype) * keras.ops.cast(v, g.dtype)
                for g, v in zip(grads, variables)
            ]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.coupled_weight_decay
        return config


def _backend_class(cls):
    """The class to derive from: on torch, the faster one Keras swaps in
    (`keras_private.torch_optimizer_class`)."""
    if keras.backend.backend() != "torch":
        return cls
    return keras_private.torch_optimizer_class(cls)


@keras.saving.register_keras_serializable(package="keras_amb")
class SGD(_CoupledWeightDecay, _backend_class(keras.optimizers.SGD)):
    """`keras.optimizers.SGD` with coupled (PyTorch-style L2) weight decay.

    With momentum `mu`, learning rate `lr` and decay `wd`, each step is
    `g = grad + wd * w; m = mu * m - lr * g; w = w + m`, which is PyTorch's
    `SGD(lr, momentum=mu, weight_decay=wd)` step for step.

    Args: those of `keras.optimizers.SGD`; `weight_decay` is the L2 factor.

    Example:
    >>> opt = SGD(0.1, momentum=0.9, weight_decay=1e-4)
    >>> opt.get_config()["weight_decay"]
    0.0001
    """


@keras.saving.register_keras_serializable(package="keras_amb")
class Adam(_CoupledWeightDecay, _backend_class(keras.optimizers.Adam)):
    """`keras.optimizers.Adam` with coupled (PyTorch-style L2) weight decay.

    Args: those of `keras.optimizers.Adam`; `weight_decay` is the L2 factor.

    Example:
    >>> Adam(1e-3, weight_decay=1e-4).get_config()["weight_decay"]
    0.0001
    """


def make_optimizer(spec):
    """The optimizer of a config's `optimizer:` mapping.

    Args:
        spec: dict with `name` (`sgd`, `adam` or `adamw`), `learning_rate`,
            and optionally `momentum`, `nesterov` (SGD) and `weight_decay`
            (coupled for SGD and Adam, decoupled for AdamW).

    Example:
    >>> make_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9,
    ...                 "weight_decay": 1e-4}).__class__.__name__
    'SGD'
    """
    spec = dict(spec)
    name = spec.pop("name")
    if name not in NAMES:
        raise ValueError(f"`name` must be one of {NAMES}. Received: name={name!r}")
    learning_rate = float(spec.pop("learning_rate"))
    weight_decay = spec.pop("weight_decay", None)
    if name == "sgd":
        return SGD(
            learning_rate,
            momentum=spec.get("momentum", 0.9),
            nesterov=spec.get("nesterov", False),
            weight_decay=weight_decay,
        )
    if name == "adam":
        return Adam(learning_rate, weight_decay=weight_decay)
    return keras.optimizers.AdamW(
        learning_rate, weight_decay=0.004 if weight_decay is None else weight_decay
    )


@keras.saving.register_keras_serializable(package="keras_amb")
class DualOptimizer(keras.optimizers.Optimizer):
    """The main optimizer (eq. 5) and the complement optimizer (COT) as one.

    Complement Objective Training takes its complement step on each batch
    with a second optimizer that has its own state (COT's reference code does the
    same). Keras only carries `model.optimizer` through `fit` (on JAX, only
    `model.optimizer.variables` are part of the compiled training state) and
    through `model.save`, so the pair travels as one optimizer whose
    `variables` are the main optimizer's followed by the complement
    optimizer's. `apply` is the main optimizer's; the train step reaches
    `complement_optimizer` explicitly.

    The main optimizer is built on all trainable weights, the complement
    optimizer on the weights that feed the attention mining branch
    (`build(var_list, complement_var_list)`), so it keeps no state for
    weights it never changes.

    Args:
        optimizer: the main optimizer (instance, name or config).
        complement_optimizer: the complement optimizer; by default a fresh
            optimizer of the same class and hyper-parameters.

    Example:
    >>> opt = DualOptimizer(SGD(0.1, momentum=0.9))
    >>> opt.complement_optimizer.__class__.__name__
    'SGD'
    """

    def __init__(self, optimizer, complement_optimizer=None, **kwargs):
        optimizer = keras.optimizers.get(optimizer)
        if isinstance(optimizer, DualOptimizer):
            raise ValueError(
                "`optimizer` must be a plain optimizer, not a DualOptimizer. "
                f"Received: optimizer={optimizer!r}"
            )
        if complement_optimizer is None:
            complement_optimizer = optimizer.__class__.from_config(
                optimizer.get_config()
            )
        else:
            complement_optimizer = keras.optimizers.get(complement_optimizer)
        kwargs.pop("learning_rate", None)
        kwargs.setdefault("name", "dual_optimizer")
        super().__init__(learning_rate=0.0, **kwargs)
        self.optimizer = optimizer
        self.complement_optimizer = complement_optimizer

    def build(self, var_list, complement_var_list=None):
        if not self.optimizer.built:
            self.optimizer.build(var_list)
        if not self.complement_optimizer.built:
            self.complement_optimizer.build(
                var_list if complement_var_list is None else complement_var_list
            )
        self.built = True

    @property
    def variables(self):
        return self.optimizer.variables + self.complement_optimizer.variables

    def apply(self, grads, trainable_variables=None):
        return self.optimizer.apply(grads, trainable_variables)

    @property
    def learning_rate(self):
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.optimizer.learning_rate = learning_rate
        self.complement_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.optimizer.iterations

    def scale_loss(self, loss):
        return self.optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.optimizers.serialize(self.optimizer),
            "complement_optimizer": keras.optimizers.serialize(
                self.complement_optimizer
            ),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["optimizer"] = keras.optimizers.deserialize(
            config["optimizer"], custom_objects=custom_objects
        )
        config["complement_optimizer"] = keras.optimizers.deserialize(
            config["complement_optimizer"], custom_objects=custom_objects
        )
        return cls(**config)


def main_optimizer(optimizer):
    """The optimizer of eq. 5 (of a `DualOptimizer`, or `optimizer` itself)."""
    return optimizer.optimizer if isinstance(optimizer, DualOptimizer) else optimizer


def complement_optimizer(optimizer):
    """COT's optimizer of a `DualOptimizer`; None for a plain optimizer."""
    return optimizer.complement_optimizer if isinstance(optimizer, DualOptimizer) else None


def step_optimizer(optimizer, step):
    """The optimizer of section 3.5's update `step` (`"main"` or
    `"complement"`) within a model's `optimizer`."""
    if step == "main":
        return main_optimizer(optimizer)
    complement = complement_optimizer(optimizer)
    if complement is None:
        raise ValueError(
            "The complement step needs a DualOptimizer (`model.compile` makes "
            f"one when the model has a complement step). Received: {optimizer!r}"
        )
    return complement


def step_states(optimizer, values):
    """Splits values of `optimizer.variables` (JAX's stateless optimizer
    state) into each step's optimizer's own: `{"main": [...],
    "complement": [...]}` ("complement" only for a `DualOptimizer`). Each
    sub-optimizer's variables are matched by identity, not by position."""
    position = {id(v): i for i, v in enumerate(optimizer.variables)}
    steps = ("main", "complement") if isinstance(optimizer, DualOptimizer) else ("main",)
    return {step: [values[position[id(v)]] for v in step_optimizer(optimizer, step).variables]
            for step in steps}


def join_step_states(optimizer, states):
    """The inverse of `step_states`: values in `optimizer.variables`' order."""
    values = [None] * len(optimizer.variables)
    position = {id(v): i for i, v in enumerate(optimizer.variables)}
    for step, step_values in states.items():
        for variable, value in zip(step_optimizer(optimizer, step).variables, step_values):
            values[position[id(variable)]] = value
    return values


def _loss_scaled(optimizer):
    scaler = keras.optimizers.LossScaleOptimizer
    return optimizer if isinstance(optimizer, scaler) else scaler(optimizer)


def for_model(model, optimizer, complement_optimizer=None):
    """The optimizer `model.compile` hands to Keras.

    A `DualOptimizer` when the model trains with COT (a given one is kept),
    the plain main optimizer otherwise; under `mixed_float16` each optimizer
    gets its own loss scaling (each of the two steps scales its own loss, so
    Keras's automatic wrapping, which would hide the pair, is not used).
    """
    if isinstance(optimizer, DualOptimizer):
        main, complement = optimizer.optimizer, optimizer.complement_optimizer
    else:
        main, complement = keras.optimizers.get(optimizer), complement_optimizer
    if model.dtype_policy.name == "mixed_float16":
        main = _loss_scaled(main)
        if complement is not None:
            complement = _loss_scaled(complement)
    if not model.has_complement_step:
        return main
    if complement is None:
        inner = main.inner_optimizer if isinstance(
            main, keras.optimizers.LossScaleOptimizer) else main
        complement = inner.__class__.from_config(inner.get_config())
        if isinstance(main, keras.optimizers.LossScaleOptimizer):
            complement = _loss_scaled(complement)
    return DualOptimizer(main, complement)


def build_for_model(model, optimizer):
    """Builds each optimizer on its weights: the main one on all trainable
    weights, the complement one on `model.complement_variables`. Built at
    compile time, so their variables exist whichever backend steps first.
    The PC centers are left out of the main optimizer's weight decay."""
    main = main_optimizer(optimizer)
    inner = main.inner_optimizer if isinstance(
        main, keras.optimizers.LossScaleOptimizer) else main
    if model.center_variables and not inner.built:
        inner.exclude_from_weight_decay(var_list=model.center_variables)
    if isinstance(optimizer, DualOptimizer):
        optimizer.build(model.trainable_variables, model.complement_variables)
    else:
        optimizer.build(model.trainable_variables)
