"""One Keras optimizer holding the two optimizers of the paper's train step."""

import keras


@keras.saving.register_keras_serializable(package="keras_amb")
class DualOptimizer(keras.optimizers.Optimizer):
    """The main optimizer (eq. 5) and the complement optimizer (COT) as one.

    Complement Objective Training takes a second step on each batch with a
    second optimizer that has its own state (COT's reference code does the
    same). Keras only carries `model.optimizer` through `fit` (on JAX, only
    `model.optimizer.variables` are part of the compiled training state) and
    through `model.save`, so the pair travels as one optimizer whose
    `variables` are the main optimizer's followed by the complement
    optimizer's. `apply` is the main optimizer's; the model's train step
    reaches `complement_optimizer` explicitly.

    Both inner optimizers are built on the full list of trainable variables;
    the complement step only ever changes the variables that feed the
    attention mining branch.

    Args:
        optimizer: the main optimizer (instance, name or config).
        complement_optimizer: the complement optimizer; by default a fresh
            optimizer of the same class and hyper-parameters.

    Example:
    >>> opt = DualOptimizer(keras.optimizers.SGD(0.1, momentum=0.9))
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

    def build(self, var_list):
        if not self.optimizer.built:
            self.optimizer.build(var_list)
        if not self.complement_optimizer.built:
            self.complement_optimizer.build(var_list)
        self.built = True

    @property
    def variables(self):
        return self.optimizer.variables + self.complement_optimizer.variables

    @property
    def num_main_variables(self):
        return len(self.optimizer.variables)

    def apply(self, grads, trainable_variables=None):
        return self.optimizer.apply(grads, trainable_variables)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        n = self.num_main_variables
        trainable_variables, main = self.optimizer.stateless_apply(
            optimizer_variables[:n], grads, trainable_variables
        )
        return trainable_variables, list(main) + list(optimizer_variables[n:])

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
