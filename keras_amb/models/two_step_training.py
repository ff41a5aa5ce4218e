"""Section 3.5's training, as methods of `AttentionBranchNetwork`.

The paper trains in two stages (an ABN, then the proposed model initialised
from it: `transfer_weights_from`, `initialize_centers`) and, in the second,
takes two updates per batch: eq. 5 over every weight (`main_step_loss`),
then the complement step over the weights that feed the AMB
(`complement_step_loss`, its own optimizer). `TwoStepTraining` holds those
methods, the weights each update changes, the optimizers `compile` builds,
the metrics each epoch reports, and Keras's `train_step` / `test_step`
(which hand the backend-specific part to `train_steps.py`). What each update
minimizes is `objective.Objective`'s; the network itself (Figure 1) is
`attention_branch_network.py`'s.
"""

import contextlib

import keras
from keras import ops

from keras_amb import keras_private
from keras_amb import optimizers
from keras_amb.models import backbones
from keras_amb.models import objective
from keras_amb.models import train_steps
from keras_amb.models.objective import FEATURE_STATISTICS
from keras_amb.models.objective import STEPS
from keras_amb.models.objective import feature_statistics
from keras_amb.models.outputs import attention_outputs
from keras_amb.models.outputs import predictions
from keras_amb.layers.batch_normalization import frozen_statistics


class TwoStepTraining:
    """Mixin of `AttentionBranchNetwork`: the training of section 3.5.

    It reads the model's switches and layers (`objective`, `pc`,
    `amb_gradient`, `feature_extractor`, `attention_branch`,
    `perception_branch`, the PC centers) and calls its `forward_step`.
    See `AttentionBranchNetwork` for the arguments and an example.
    """

    def _build_metrics(self):
        """The metric trackers, made once by the constructor."""
        # Grouped as Keras groups compiled metrics, each with its direction,
        # so `ModelCheckpoint(monitor="val_top1")` and
        # `EarlyStopping(monitor="val_per_loss")` infer max / min by themselves.
        self.loss_trackers = {}
        for name in ["loss"] + self.objective.tracked():
            self.loss_trackers[name] = keras_private.set_metric_direction(
                keras.metrics.Mean(name=name), "down")
        # The health of the features PC acts on: their mean norm and the
        # fraction of exactly-zero entries (a collapse shows in both).
        self.feature_trackers = {}
        for name in FEATURE_STATISTICS:
            self.feature_trackers[name] = keras_private.set_metric_direction(
                keras.metrics.Mean(name=name), "up")
        self.top1 = keras.metrics.SparseCategoricalAccuracy(name="top1")
        self.top5 = keras.metrics.SparseTopKCategoricalAccuracy(
            k=min(5, self.num_classes), name="top5"
        )
        self.att_top1 = keras.metrics.SparseCategoricalAccuracy(name="att_top1")
        self._metric_group = keras_private.metric_group(
            list(self.loss_trackers.values()) + [self.top1, self.top5, self.att_top1]
            + list(self.feature_trackers.values())
        )

    # === The two updates (their losses: `objective.py`) ===

    def main_step_loss(self, inputs, y, training=True, **extra):
        """The first update of each iteration: eq. 5, over every weight.

        Args:
            inputs: images `(N, H, W, 3)`, or a dict with `"images"`.
            y: integer labels, `(N,)`.
            training: bool.
            **extra: `sample_weight` `(N,)`; `attention_target` (corrected
                maps, `(N, h, w, 1)`) and `has_attention_target` `(N,)`.

        Returns:
            An `objective.StepLoss`: `loss`, `terms` (eq. 5's weighted
            terms, by name), `parts` (the unweighted components and
            `"loss"`, as logged) and the forward pass's `outputs`.
        """
        return self._step_loss("main", inputs, y, training, extra)

    def complement_step_loss(self, inputs, y, training=True, **extra):
        """The second update: a fresh forward pass with the weights eq. 5's
        update left, and COT's complement entropy of the AMB output (or,
        with `amb_gradient="attention"` and no COT, `amb_weight * L_am`),
        over `complement_variables`. Arguments and result as
        `main_step_loss`; `parts` has no `"loss"`."""
        return self._step_loss("complement", inputs, y, training, extra)

    def eval_loss(self, inputs, y, training=False, **extra):
        """Validation: eq. 5's loss, with the mining losses the complement
        step minimizes logged beside it. As `main_step_loss`."""
        return self._step_loss("eval", inputs, y, training, extra)

    def _step_loss(self, step, inputs, y, training, extra):
        outputs = self.forward_step(inputs, step, training=training)
        return self.objective.loss(outputs, y, step, **extra)

    def forward_step(self, inputs, step, training=True):
        """The forward pass whose outputs the loss of `step` reads.

        Section 3.5's iteration: `"main"` (eq. 5: `call`'s outputs, the two
        PC features and centers, and the AMB logits when L_am is in eq. 5),
        `"complement"` (the complement step: the attention map and the AMB
        logits; the perception branch runs on F* only) and `"eval"`
        (everything, for validation losses). What each step computes is
        the objective's to say (`self.objective.needs`). The complement
        step recomputes a batch the main step has already counted, so its
        forward pass leaves batch-norm moving statistics alone (unless
        `naive_bn_statistics`).

        Args:
            inputs: images `(N, H, W, 3)`, or a dict with `"images"`.
            step: str, one of `objective.STEPS`.
            training: bool.

        Returns:
            A dict of tensors, the loss's inputs (see `Objective.parts`).
        """
        if step not in STEPS:
            raise ValueError(f"`step` must be one of {STEPS}. Received: step={step!r}")
        needs = self.objective.needs
        images = inputs["images"] if isinstance(inputs, dict) else inputs
        counted = step == "complement" and not self.naive_bn_statistics
        with frozen_statistics() if counted else contextlib.nullcontext():
            features = self.forward_features(images, training=training)
            if needs(step, "head"):
                head = self.forward_head(features, training=training)
                attention = head["attention"]
                outputs = predictions(head)
                outputs["perception_features"] = head["features"]
                outputs["attention_features"] = head["attention_features"]
                if self.pc:
                    outputs["perception_centers"] = ops.convert_to_tensor(
                        self.perception_centers.centers)
                    outputs["attention_centers"] = ops.convert_to_tensor(
                        self.attention_centers.centers)
            else:  # the AMB alone reads the attention
                branch = self.attention_branch(features, training=training)
                attention = self._used_map(branch["attention"])
                outputs = attention_outputs(attention, branch["logits"])
            if needs(step, "amb_logits"):
                outputs["amb_logits"] = self.forward_amb(features, attention, training=training)
            if needs(step, "erased_logits"):
                outputs["erased_logits"] = self.forward_amb(
                    features, attention, training=training, fixed_mask=True)
        return outputs

    @property
    def has_complement_step(self):
        """Whether each iteration takes the complement step after eq. 5's:
        COT's, or L_am's on the attention map alone
        (`amb_gradient="attention"`)."""
        return self.objective.has_complement_step

    def step_variables(self, step):
        """The weights the update of `step` changes: every trainable weight
        for eq. 5's, `complement_variables` for the complement step's."""
        if step == "complement":
            return self.complement_variables
        return self.trainable_variables

    @property
    def metrics(self):
        return [self._metric_group]

    def update_metrics(self, parts, outputs, y, sample_weight=None):
        for name, value in parts.items():
            if name in self.loss_trackers:
                self.loss_trackers[name].update_state(value)
        for name, value in feature_statistics(outputs).items():
            self.feature_trackers[name].update_state(value)
        if "probabilities" in outputs:
            self.top1.update_state(y, outputs["probabilities"], sample_weight)
            self.top5.update_state(y, outputs["probabilities"], sample_weight)
        self.att_top1.update_state(y, outputs["attention_probabilities"], sample_weight)
        return {m.name: m.result() for m in self._metric_group.metrics}

    @property
    def complement_variables(self):
        """The weights the complement step changes: every weight that feeds the
        AMB output (feature extractor, attention map, perception branch), not
        the attention branch's logits head nor the PC centers; with
        `amb_gradient="attention"`, the attention map's weights alone."""
        if self.amb_gradient == "attention":
            return list(self.attention_branch.map_variables)
        return (
            self.feature_extractor.trainable_variables
            + self.attention_branch.map_variables
            + self.perception_branch.trainable_variables
        )

    def initialize_centers(self, batches):
        """Sets the PC centers to the per-class means of the two PC features
        (see `objective.initialize_centers`)."""
        return objective.initialize_centers(self, batches)

    @property
    def center_variables(self):
        """The PC class centers (empty without the PC loss)."""
        if not self.pc:
            return []
        return (
            self.perception_centers.trainable_variables
            + self.attention_centers.trainable_variables
        )

    def compile(
        self, optimizer="sgd", complement_optimizer=None, jit_compile="auto",
        loss=None, metrics=None, **kwargs,
    ):
        """Configures training.

        Args:
            optimizer: the optimizer of eq. 5.
            complement_optimizer: the optimizer of COT's complement step; by
                default a copy of `optimizer` with its own state. Ignored
                unless `cot=True`.
            jit_compile: `"auto"` compiles with XLA where it is fast (JAX,
                and TensorFlow on GPU); `True`/`False` force it.
            loss: not accepted: the model computes the paper's losses.
            metrics: not accepted: the model reports its own metrics.
            **kwargs: passed to `keras.Model.compile`.
        """
        for name, value in (("loss", loss), ("metrics", metrics)) + tuple(
            (k, kwargs.get(k)) for k in ("loss_weights", "weighted_metrics")
        ):
            if value is not None:
                raise ValueError(
                    f"{type(self).__name__} computes its own losses (eq. 5 and "
                    "COT) and metrics (losses, top1, top5, att_top1); `compile` "
                    f"takes no `{name}`. Received: {name}={value!r}"
                )
        optimizer = optimizers.for_model(self, optimizer, complement_optimizer)
        kwargs["auto_scale_loss"] = False
        if jit_compile == "auto":
            jit_compile = train_steps.default_jit_compile()
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        optimizers.build_for_model(self, self.optimizer)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        # The saving machine's XLA choice says nothing about this one (on
        # torch, jit_compile=True would mean a slow torch.compile); a model
        # saved with run_eagerly=True stays eager (XLA needs a traced step).
        config["jit_compile"] = False if config.get("run_eagerly") else "auto"
        self.compile(**config)

    def train_step(self, *args):
        return train_steps.train_step(self, *args)

    def test_step(self, *args):
        return train_steps.test_step(self, *args)

    # === From the first stage to the second ===

    def transfer_weights_from(self, source):
        """Initialises this model from another one (paper step 1 -> step 2).

        Copies the feature extractor, attention branch and perception branch
        from `source` (e.g. a trained ABN); PC centers stay as initialised.
        Both models must have the same backbone and number of classes.
        """
        if source.backbone != self.backbone or source.num_classes != self.num_classes:
            raise ValueError(
                "Can only initialise from a model with the same backbone and "
                f"classes. Received: backbone={source.backbone!r}, "
                f"num_classes={source.num_classes} (this model: "
                f"{self.backbone!r}, {self.num_classes})"
            )
        for name in ("feature_extractor", "attention_branch", "perception_branch"):
            getattr(self, name).set_weights(getattr(source, name).get_weights())
        return self

    def load_backbone_weights(self, weights):
        """Loads pretrained backbone weights: `"imagenet"` or a file path."""
        if weights is None:
            return 0
        if not backbones.get_backbone_spec(self.backbone)["pretrained"]:
            raise ValueError(
                "Pretrained weights exist only for backbone='resnet50'. "
                f"Received: backbone={self.backbone!r}, weights={weights!r}"
            )
        return backbones.load_resnet50_weights(self, weights)
