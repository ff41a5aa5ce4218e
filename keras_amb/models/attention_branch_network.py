import keras
from keras import ops

from keras_amb import losses
from keras_amb.layers.attention_branch import AttentionBranch
from keras_amb.layers.attention_mechanism import AttentionMechanism
from keras_amb.layers.class_centers import ClassCenters
from keras_amb.layers.perception_branch import PerceptionBranch
from keras_amb.layers.soft_mask import SoftMask
from keras_amb.models import backbones
from keras_amb.models import train_steps
from keras_amb.optimizers import DualOptimizer

MODES = ("predict", "step_a", "step_b", "eval")


class NonFiniteLossError(RuntimeError):
    """Raised when a loss component becomes NaN or infinite."""


def _loss_scaled(optimizer):
    scaler = keras.optimizers.LossScaleOptimizer
    if isinstance(optimizer, DualOptimizer):
        inner = [optimizer.optimizer, optimizer.complement_optimizer]
        inner = [o if isinstance(o, scaler) else scaler(o) for o in inner]
        return DualOptimizer(*inner)
    return optimizer if isinstance(optimizer, scaler) else scaler(optimizer)


@keras.saving.register_keras_serializable(package="keras_amb")
class AttentionBranchNetwork(keras.Model):
    """Attention Branch Network, optionally with the paper's improvements.

    Figure 1 of the paper: a feature extractor (stem + stages 1..3) gives F;
    the attention branch gives the attention map A and its own logits; the
    attention mechanism gives `F' = A * F (+ F with the bypass)`; the
    perception branch (stage 4, GAP, dense) classifies F'. With `mining=True`
    the perception branch is applied again, with shared weights, to
    `F* = F - T(A) * F` (the attention mining branch, AMB).

    The train step (eq. 5) minimizes `L_att + L_per (+ L_PC) (+ w_am * L_am)`
    with the main optimizer; with `complement_objective=True` it then takes a
    second step on the same batch, with a fresh forward pass and a second
    optimizer, on the complement entropy of the AMB output (L_am is then left
    out of eq. 5). `AttentionBranchNetwork()` with its defaults is ABN;
    `AttentionMiningNetwork` has the proposed model's defaults.

    Inputs are RGB images with pixel values in `[0, 255]`, `(N, H, W, 3)`;
    normalisation for the backbone happens inside. Calling the model (and
    `predict`) returns a dict: `probabilities` and `logits` (perception
    branch, the reported predictions), `attention` (`(N, h, w)`, in `[0, 1]`),
    `attention_logits` and `attention_probabilities` (attention branch).

    Args:
        num_classes: int, number of classes K.
        backbone: str, `"resnet50"`, `"resnet_small"` or `"resnet_tiny"`.
        image_size: int, the square input size the model is built for (other
            sizes work too; the exported model resizes to this).
        bypass: bool, ABN's `A * F + F` (True) or the proposed `A * F`.
        mining: bool, add the attention mining branch (AMB).
        prototype_conformity: bool, add the PC loss with learnable centres on
            the perception and attention-module features.
        complement_objective: bool, COT's second step on the AMB output
            (needs `mining=True`).
        mask_threshold: float, sigma of the mask T(A) (paper: 0.78 CUB,
            0.40 Stanford Dogs).
        mask_slope: float, omega of the soft mask (default 10).
        hard_mask: bool, straight-through hard mask instead of the soft one.
        mining_weight: float, weight of L_am in eq. 5 (paper: 1e-4).
        pc_weight: float, weight of the proximity part of the PC loss.
        pc_contrastive_weight: float, weight of the contrastive part.
        center_lr_multiplier: float, learning rate of the PC centres relative
            to the model's (their gradient is scaled by it).
        attention_target_weight: float, weight of the Mitsuhara et al. loss
            pulling the attention map to corrected maps given as
            `{"images": ..., "attention_targets": ...}` inputs; 0 disables.
        dropout: float, dropout before the perception classifier.
        bn_momentum: float, momentum of all batch normalisation layers.

    Example:
    >>> model = AttentionBranchNetwork(num_classes=4, backbone="resnet_tiny",
    ...                                image_size=32)
    >>> out = model(keras.ops.zeros((2, 32, 32, 3)))
    >>> out["probabilities"].shape, out["attention"].shape
    ((2, 4), (2, 8, 8))

    Reference: Fukui et al., "Attention Branch Network", CVPR 2019.
    """

    def __init__(
        self,
        num_classes,
        backbone="resnet50",
        image_size=224,
        bypass=True,
        mining=False,
        prototype_conformity=False,
        complement_objective=False,
        mask_threshold=0.5,
        mask_slope=10.0,
        hard_mask=False,
        mining_weight=1e-4,
        pc_weight=1.0,
        pc_contrastive_weight=1e-4,
        center_lr_multiplier=1.0,
        attention_target_weight=0.0,
        dropout=0.0,
        bn_momentum=0.9,
        **kwargs,
    ):
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(
                f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
            )
        if int(image_size) != image_size or image_size < 16:
            raise ValueError(
                f"`image_size` must be an int >= 16. Received: image_size={image_size!r}"
            )
        if complement_objective and not mining:
            raise ValueError(
                "`complement_objective=True` trains the attention mining branch "
                "and needs `mining=True`. Received: mining=False"
            )
        for arg, value in (
            ("mining_weight", mining_weight),
            ("pc_weight", pc_weight),
            ("pc_contrastive_weight", pc_contrastive_weight),
            ("center_lr_multiplier", center_lr_multiplier),
            ("attention_target_weight", attention_target_weight),
        ):
            if value < 0:
                raise ValueError(f"`{arg}` must be >= 0. Received: {arg}={value!r}")
        spec = backbones.get_backbone_spec(backbone)
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.image_size = int(image_size)
        self.bypass = bool(bypass)
        self.mining = bool(mining)
        self.prototype_conformity = bool(prototype_conformity)
        self.complement_objective = bool(complement_objective)
        self.mask_threshold = float(mask_threshold)
        self.mask_slope = float(mask_slope)
        self.hard_mask = bool(hard_mask)
        self.mining_weight = float(mining_weight)
        self.pc_weight = float(pc_weight)
        self.pc_contrastive_weight = float(pc_contrastive_weight)
        self.center_lr_multiplier = float(center_lr_multiplier)
        self.attention_target_weight = float(attention_target_weight)
        self.dropout = float(dropout)
        self.bn_momentum = bn_momentum

        # === Layers ===
        stage = {
            "num_classes": self.num_classes,
            "stage_filters": spec["stage_filters"][3],
            "stage_blocks": spec["stage_blocks"][3],
            "bottleneck": spec["bottleneck"],
            "use_bias": spec["use_bias"],
            "bn_momentum": bn_momentum,
            "dtype": self.dtype_policy,
        }
        self.feature_extractor = backbones.feature_extractor(
            backbone, bn_momentum=bn_momentum, dtype=self.dtype_policy
        )
        self.attention_branch = AttentionBranch(name="attention_branch", **stage)
        self.attention_mechanism = AttentionMechanism(
            bypass=self.bypass, dtype=self.dtype_policy, name="attention_mechanism"
        )
        self.perception_branch = PerceptionBranch(
            dropout=self.dropout, name="perception_branch", **stage
        )
        self.soft_mask = SoftMask(
            self.mask_threshold, self.mask_slope, self.hard_mask, name="soft_mask"
        )
        if self.prototype_conformity:
            self.perception_centers = ClassCenters(
                self.num_classes,
                self.perception_branch.feature_dim,
                name="perception_centers",
            )
            self.attention_centers = ClassCenters(
                self.num_classes, self.num_classes, name="attention_centers"
            )

        # === Metrics ===
        names = ["loss", "att_loss", "per_loss"]
        if self.prototype_conformity:
            names.append("pc_loss")
        if self.mining:
            names.append("am_loss")
        if self.complement_objective:
            names.append("coe_loss")
        if self.attention_target_weight > 0:
            names.append("map_loss")
        self.loss_trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.top1 = keras.metrics.SparseCategoricalAccuracy(name="top1")
        self.top5 = keras.metrics.SparseTopKCategoricalAccuracy(
            k=min(5, self.num_classes), name="top5"
        )
        self.att_top1 = keras.metrics.SparseCategoricalAccuracy(name="att_top1")

        self.build((None, self.image_size, self.image_size, 3))

    # === Forward pass ===

    def build(self, input_shape):
        shape = tuple(input_shape)
        features_shape = self.feature_extractor.compute_output_shape(shape)
        self.attention_branch.build(features_shape)
        self.perception_branch.build(features_shape)
        if self.prototype_conformity:
            self.perception_centers.build()
            self.attention_centers.build()
        self.built = True

    def call(self, inputs, training=None, mode="predict"):
        """Forward pass; `mode` selects what the train steps need."""
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        images = inputs["images"] if isinstance(inputs, dict) else inputs
        features = self.feature_extractor(images, training=training)
        attention_out = self.attention_branch(features, training=training)
        attention = attention_out["attention"]
        outputs = {
            "attention": attention[..., 0],
            "attention_logits": attention_out["logits"],
            "attention_probabilities": ops.softmax(attention_out["logits"]),
        }
        if mode != "step_b":
            attended = self.attention_mechanism(features, attention)
            perception = self.perception_branch(attended, training=training)
            outputs["logits"] = perception["logits"]
            outputs["probabilities"] = ops.softmax(perception["logits"])
            if mode != "predict":
                outputs["perception_features"] = perception["features"]
                outputs["attention_features"] = attention_out["features"]
        use_mining = self.mining and (
            mode in ("step_b", "eval")
            or (mode == "step_a" and not self.complement_objective)
        )
        if use_mining:
            mask = ops.cast(self.soft_mask(attention), features.dtype)
            masked = features - mask * features
            outputs["mining_logits"] = self.perception_branch(
                masked, training=training
            )["logits"]
        if self.prototype_conformity and mode in ("step_a", "eval"):
            outputs["perception_centers"] = ops.convert_to_tensor(
                self.perception_centers.centers
            )
            outputs["attention_centers"] = ops.convert_to_tensor(
                self.attention_centers.centers
            )
        return outputs

    # === Losses ===

    def compute_losses(
        self, outputs, y, mode="step_a", attention_targets=None, attention_target_weights=None
    ):
        """The loss the step of `mode` minimizes, and each named component.

        `"step_a"`: eq. 5. `"step_b"`: the AMB complement entropy.
        `"eval"`: eq. 5 plus whatever else is defined, for logging.
        """
        parts = {}
        if mode == "step_b":
            coe = losses.complement_entropy(
                y, outputs["mining_logits"], zero_true_class=True
            )
            parts["coe_loss"] = coe
            parts["am_loss"] = losses.attention_mining_loss(y, outputs["mining_logits"])
            return coe, parts
        parts["att_loss"] = losses.cross_entropy(y, outputs["attention_logits"])
        parts["per_loss"] = losses.cross_entropy(y, outputs["logits"])
        total = parts["att_loss"] + parts["per_loss"]
        if self.prototype_conformity:
            pc = losses.prototype_conformity(
                outputs["perception_features"],
                y,
                outputs["perception_centers"],
                self.pc_contrastive_weight,
            ) + losses.prototype_conformity(
                outputs["attention_features"],
                y,
                outputs["attention_centers"],
                self.pc_contrastive_weight,
            )
            parts["pc_loss"] = pc
            total = total + self.pc_weight * pc
        if "mining_logits" in outputs:
            am = losses.attention_mining_loss(y, outputs["mining_logits"])
            parts["am_loss"] = am
            if not self.complement_objective:
                total = total + self.mining_weight * am
            if mode == "eval" and self.complement_objective:
                parts["coe_loss"] = losses.complement_entropy(
                    y, outputs["mining_logits"], zero_true_class=True
                )
        if self.attention_target_weight > 0 and attention_targets is not None:
            map_loss = losses.attention_map_loss(
                outputs["attention"], attention_targets, weights=attention_target_weights
            )
            parts["map_loss"] = map_loss
            total = total + self.attention_target_weight * map_loss
        parts["loss"] = total
        return total, parts

    # === Training ===

    @property
    def metrics(self):
        return list(self.loss_trackers.values()) + [
            self.top1,
            self.top5,
            self.att_top1,
        ]

    def update_metrics(self, parts, outputs, y):
        for name, value in parts.items():
            if name in self.loss_trackers:
                self.loss_trackers[name].update_state(value)
        if "probabilities" in outputs:
            self.top1.update_state(y, outputs["probabilities"])
            self.top5.update_state(y, outputs["probabilities"])
        self.att_top1.update_state(y, outputs["attention_probabilities"])
        return {m.name: m.result() for m in self.metrics}

    def compile(self, optimizer="sgd", complement_optimizer=None, jit_compile="auto", **kwargs):
        """Configures training.

        Args:
            optimizer: the optimizer of eq. 5.
            complement_optimizer: the optimizer of COT's second step; by
                default a copy of `optimizer` with its own state. Ignored
                unless `complement_objective=True`.
            jit_compile: `"auto"` compiles with XLA where it is fast (JAX,
                and TensorFlow on GPU); `True`/`False` force it.
            **kwargs: passed to `keras.Model.compile`.
        """
        if isinstance(optimizer, DualOptimizer):
            dual = optimizer
        elif self.complement_objective:
            dual = DualOptimizer(optimizer, complement_optimizer)
        else:
            dual = None
        if not self.complement_objective and dual is not None:
            optimizer = dual.optimizer
        elif dual is not None:
            optimizer = dual
        if self.dtype_policy.name == "mixed_float16":
            # Loss scaling per optimizer (each step scales its own loss);
            # Keras's automatic wrapping would hide the pair.
            optimizer = _loss_scaled(optimizer)
        kwargs["auto_scale_loss"] = False
        if jit_compile == "auto":
            jit_compile = train_steps.default_jit_compile()
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        # Build now, so both optimizers of a DualOptimizer hold state for
        # every trainable variable whichever backend steps first.
        self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        # The saving machine's XLA choice says nothing about this one (on
        # torch, jit_compile=True would mean a slow torch.compile).
        config["jit_compile"] = "auto"
        self.compile(**config)

    @property
    def main_optimizer(self):
        if isinstance(self.optimizer, DualOptimizer):
            return self.optimizer.optimizer
        return self.optimizer

    @property
    def complement_optimizer(self):
        if isinstance(self.optimizer, DualOptimizer):
            return self.optimizer.complement_optimizer
        return None

    def _variable_indices(self, variables):
        ids = {id(v) for v in variables}
        return [i for i, v in enumerate(self.trainable_variables) if id(v) in ids]

    @property
    def center_variable_indices(self):
        """Indices, in `trainable_variables`, of the PC class centres."""
        if not self.prototype_conformity:
            return []
        return self._variable_indices(
            self.perception_centers.trainable_variables
            + self.attention_centers.trainable_variables
        )

    @property
    def complement_variable_indices(self):
        """Indices of the variables COT's step changes: those feeding the AMB."""
        excluded = set(self.center_variable_indices)
        excluded.update(
            self._variable_indices(
                self.attention_branch.logits_conv.trainable_variables
            )
        )
        return [
            i for i in range(len(self.trainable_variables)) if i not in excluded
        ]

    def scale_center_gradients(self, grads):
        if self.center_lr_multiplier == 1.0:
            return grads
        grads = list(grads)
        for i in self.center_variable_indices:
            grads[i] = grads[i] * self.center_lr_multiplier
        return grads

    def train_step(self, *args):
        return train_steps.train_step(self, *args)

    def test_step(self, *args):
        return train_steps.test_step(self, *args)

    # === Checkpoints ===

    def transfer_weights_from(self, source):
        """Initialises this model from another one (paper step 1 -> step 2).

        Copies the feature extractor, attention branch and perception branch
        from `source` (e.g. a trained ABN); PC centres stay as initialised.
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
        if self.backbone != "resnet50":
            raise ValueError(
                "Pretrained weights exist only for backbone='resnet50'. "
                f"Received: backbone={self.backbone!r}, weights={weights!r}"
            )
        return backbones.load_resnet50_weights(self, weights)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "backbone": self.backbone,
                "image_size": self.image_size,
                "bypass": self.bypass,
                "mining": self.mining,
                "prototype_conformity": self.prototype_conformity,
                "complement_objective": self.complement_objective,
                "mask_threshold": self.mask_threshold,
                "mask_slope": self.mask_slope,
                "hard_mask": self.hard_mask,
                "mining_weight": self.mining_weight,
                "pc_weight": self.pc_weight,
                "pc_contrastive_weight": self.pc_contrastive_weight,
                "center_lr_multiplier": self.center_lr_multiplier,
                "attention_target_weight": self.attention_target_weight,
                "dropout": self.dropout,
                "bn_momentum": self.bn_momentum,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_amb")
class AttentionMiningNetwork(AttentionBranchNetwork):
    """The proposed model: ABN without bypass, with AMB, PC loss and COT.

    Same arguments as `AttentionBranchNetwork`, with the paper's defaults:
    `bypass=False, mining=True, prototype_conformity=True,
    complement_objective=True`. Switch them off for the ablations
    (AMB, AMB+PC, AMB+COT).

    Example:
    >>> abn = AttentionBranchNetwork(num_classes=4, backbone="resnet_tiny",
    ...                              image_size=32)
    >>> model = AttentionMiningNetwork(num_classes=4, backbone="resnet_tiny",
    ...                                image_size=32, mask_threshold=0.4)
    >>> model = model.transfer_weights_from(abn)
    """

    def __init__(
        self,
        num_classes,
        bypass=False,
        mining=True,
        prototype_conformity=True,
        complement_objective=True,
        **kwargs,
    ):
        super().__init__(
            num_classes,
            bypass=bypass,
            mining=mining,
            prototype_conformity=prototype_conformity,
            complement_objective=complement_objective,
            **kwargs,
        )
