"""The network of the paper's Figure 1: ABN and, with its switches, the
proposed model (`attention_mining_network.py`).

The class holds the constructor, the layers, the forward passes (`call`,
`forward_features`, `forward_head`, `forward_amb`, `forward_with_cams`,
`forward_step`) and its config. Its training (section 3.5) is the
`TwoStepTraining` mixin's (`two_step_training.py`); what each update
minimizes, `objective.py`'s; the argument checks, `keras_amb/arguments.py`'s;
the layers, `keras_amb/layers/`'s.

Why it is a subclassed model and not a functional one (as keras-hub's
backbones are): Keras saves a functional model's weights under
`layers/<layer name>/...` (`saving_lib._walk_saveable` yields `"layers"`
first for `Functional`), a subclassed one's under its attribute names
(`feature_extractor/...`, `attention_branch/...`). Every `.keras` file and
checkpoint saved so far uses the second form, and the compatibility fixture
(`tests/fixtures/run_2026_12`) must keep loading; a functional graph would
need a private-API path translation on every load. The graph is instead
written once, as the entry points above, which each training step, the
explanations and the intervention test compose.
"""

import contextlib

import keras
from keras import ops

from keras_amb import keras_private
from keras_amb import losses
from keras_amb.arguments import ABN_DEFAULTS
from keras_amb.arguments import ABN_DEFAULTS as _D
from keras_amb.arguments import check_arguments
from keras_amb.arguments import as_table_type
from keras_amb.arguments import saved_arguments
from keras_amb.layers.attention_branch import AttentionBranch
from keras_amb.layers.attention_mechanism import AttentionMechanism
from keras_amb.layers.batch_normalization import frozen_statistics
from keras_amb.layers.class_centers import ClassCenters
from keras_amb.layers.perception_branch import PerceptionBranch
from keras_amb.layers.mining_mask import MiningMask
from keras_amb.models import backbones
from keras_amb.models import objective
from keras_amb.models.outputs import predictions
from keras_amb.models.prediction_methods import PredictionMethods
from keras_amb.models.two_step_training import TwoStepTraining


@keras.saving.register_keras_serializable(package="keras_amb")
class AttentionBranchNetwork(keras_private.BuiltBeforeFit, PredictionMethods, TwoStepTraining,
                             keras.Model):
    """Attention Branch Network, optionally with the paper's improvements.

    Figure 1 of the paper: a feature extractor (stem + stages 1..3) gives F;
    the attention branch gives the attention map A and its own logits; the
    attention mechanism gives `F' = A * F (+ F with the bypass)`; the
    perception branch (stage 4, GAP, dense) classifies F'. With `amb=True`
    the perception branch is applied again, with shared weights, to
    `F* = F - T(A) * F` (the attention mining branch, AMB).

    Each train step takes eq. 5's update (`main_step_loss`) and, with COT
    (or `amb_gradient="attention"`), the complement step on the same batch
    (`complement_step_loss`), each with its own optimizer (`TwoStepTraining`).
    `AttentionBranchNetwork()` with its defaults is ABN;
    `AttentionMiningNetwork` has the proposed model's defaults.

    Inputs are RGB images with pixel values in `[0, 255]`, `(N, H, W, 3)`;
    normalisation for the backbone happens inside. Calling the model (and
    `predict`) returns a dict: `probabilities` and `logits` (perception
    branch, the reported predictions), `attention` (`(N, h, w)`, in `[0, 1]`),
    `attention_logits` and `attention_probabilities` (attention branch).

    What inference needs travels in the model's config: the class names and
    the test-time resize ratio (normalisation is a layer of the model), so a
    bare `.keras` file predicts exactly as its training run did.

    Args:
        num_classes: int, number of classes K.
        backbone: str, a key of `keras_amb.models.BACKBONES`: `"resnet50"`
            (loads ImageNet weights), `"resnet50_official"` (the official ABN
            network, for from-scratch paper runs), `"resnet_small"`,
            `"resnet_tiny"`.
        image_size: int, the square input size the model is built for (other
            sizes work too; the exported model resizes to this).
        bypass: bool, ABN's `A * F + F` (True) or the proposed `A * F`.
        amb: bool, add the attention mining branch (AMB).
        pc: bool, add the prototype conformity loss, with learnable centers on
            the perception and attention-module features.
        cot: bool, complement objective training: the complement step on
            the AMB output (needs `amb=True`).
        mask_threshold: float, sigma of the mask T(A) (paper: 0.78 CUB,
            0.40 Stanford Dogs).
        mask_slope: float, omega of the soft mask (default 10).
        hard_mask: bool, straight-through hard mask instead of the soft one.
        amb_weight: float, weight of L_am in eq. 5 (paper: 1e-4).
        amb_gradient: str, the weights the mining terms update: `"all"`
            (the paper: every weight that feeds the AMB output) or
            `"attention"` (only the attention branch's map weights; L_am then
            takes its own step, like COT's).
        pc_weight: float, weight of the whole PC loss in eq. 5 (both its
            parts; eq. 5 has 1).
        pc_contrastive_weight: float, weight of the contrastive part inside
            the PC loss, relative to the proximity part (eq. 3 has 1; the PC
            authors' code 1e-4, the default: the part is unbounded below).
        pc_distance: str, `"euclidean"` (eq. 3) or `"squared"` (the PC
            authors' code) distances in the PC loss.
        center_lr_multiplier: float, learning rate of the PC centers relative
            to the model's, with any optimizer (their update is scaled). The
            centers' gradient is that of the PC loss without `pc_weight`, so
            their speed does not depend on it, and they get no weight decay.
        area_weight: float, weight of the map's area term (ours, not the
            paper's; `keras_amb.losses.area_loss`): without it nothing
            stops the mining terms from growing the map over everything.
            0 disables.
        area_target: float in `[0, 1)`, the area the map should cover: 0
            penalises the mean of the map, a fraction uses the extremal
            perturbations' area constraint.
        smoothness_weight: float, weight of the map's total variation
            (`keras_amb.losses.smoothness_loss`); 0 disables.
        map_normalization: str, where the map is min-max normalised per
            image: `"none"`, `"mask"` (before T(A) only) or `"all"` (before
            T(A) and the attention mechanism; the map the model returns is
            then the normalised one).
        erasing_weight: float, weight of the erasing term (ACoL): CE of the
            perception branch on `F* = F - T(A) * F` with T(A) held fixed,
            so the classifier learns the evidence the map left out. 0
            disables.
        attention_target_weight: float, weight of the Mitsuhara et al. loss
            pulling the attention map to corrected maps given as
            `{"images": ..., "attention_target": ...}` inputs; 0 disables.
        naive_bn_statistics: bool, let the AMB pass and the COT step's forward
            pass update batch-norm moving statistics (a naive port of the
            paper); by default they normalise with their batch's statistics
            without updating the moving ones.
        dropout: float, dropout before the perception classifier.
        bn_momentum: float, momentum of all batch normalisation layers.
        class_names: list of str, or None for `class_0`, `class_1`, ...
        resize_ratio: float, test-time resize of the shorter side relative to
            `image_size` before the center crop (ABN: 256/224).

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
        backbone=_D["backbone"],
        image_size=_D["image_size"],
        bypass=_D["bypass"],
        amb=_D["amb"],
        pc=_D["pc"],
        cot=_D["cot"],
        mask_threshold=_D["mask_threshold"],
        mask_slope=_D["mask_slope"],
        hard_mask=_D["hard_mask"],
        amb_weight=_D["amb_weight"],
        amb_gradient=_D["amb_gradient"],
        pc_weight=_D["pc_weight"],
        pc_contrastive_weight=_D["pc_contrastive_weight"],
        pc_distance=_D["pc_distance"],
        center_lr_multiplier=_D["center_lr_multiplier"],
        attention_target_weight=_D["attention_target_weight"],
        area_weight=_D["area_weight"],
        area_target=_D["area_target"],
        smoothness_weight=_D["smoothness_weight"],
        map_normalization=_D["map_normalization"],
        erasing_weight=_D["erasing_weight"],
        naive_bn_statistics=_D["naive_bn_statistics"],
        dropout=_D["dropout"],
        bn_momentum=_D["bn_momentum"],
        class_names=_D["class_names"],
        resize_ratio=_D["resize_ratio"],
        **kwargs,
    ):
        # Every argument of the table (`arguments.ABN_DEFAULTS`), as given.
        given = {name: value for name, value in locals().items() if name in ABN_DEFAULTS}
        check_arguments(num_classes=num_classes, **given)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` must name all {num_classes} classes. Received "
                f"{len(class_names)} names: {list(class_names)[:5]}..."
            )
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        for name, value in given.items():
            setattr(self, name, as_table_type(name, value))
        self.class_names = (
            [str(n) for n in class_names] if class_names is not None else None
        )
        self.objective = objective.Objective.of(self)

        # === Layers ===
        branch = dict(
            backbones.branch_arguments(backbone),
            num_classes=self.num_classes,
            bn_momentum=bn_momentum,
            dtype=self.dtype_policy,
        )
        self.feature_extractor = backbones.feature_extractor(
            backbone, bn_momentum=bn_momentum, dtype=self.dtype_policy
        )
        self.attention_branch = AttentionBranch(name="attention_branch", **branch)
        self.attention_mechanism = AttentionMechanism(
            bypass=self.bypass, dtype=self.dtype_policy, name="attention_mechanism"
        )
        self.perception_branch = PerceptionBranch(
            dropout=self.dropout, name="perception_branch", **branch
        )
        self.mining_mask = MiningMask(
            self.mask_threshold, self.mask_slope, self.hard_mask, name="mining_mask"
        )
        if self.pc:
            self.perception_centers = ClassCenters(
                self.num_classes,
                self.perception_branch.feature_dim,
                name="perception_centers",
            )
            self.attention_centers = ClassCenters(
                self.num_classes, self.num_classes, name="attention_centers"
            )

        self._build_metrics()
        self.build((None, self.image_size, self.image_size, 3))

    # === Forward pass ===

    def build(self, input_shape):
        shape = tuple(input_shape)
        features_shape = self.feature_extractor.compute_output_shape(shape)
        self.attention_branch.build(features_shape)
        self.perception_branch.build(features_shape)
        if self.pc:
            self.perception_centers.build()
            self.attention_centers.build()
        self.built = True

    def call(self, inputs, training=None):
        """Figure 1 at inference: F, the attention branch, the attention
        mechanism and the perception branch (the outputs of `predict`)."""
        images = inputs["images"] if isinstance(inputs, dict) else inputs
        features = self.forward_features(images, training=training)
        return predictions(self.forward_head(features, training=training))

    def forward_features(self, images, training=False):
        """The feature extractor's output F (stage 3), which the attention
        branch and the attention mechanism read; Grad-CAM's layer."""
        return self.feature_extractor(images, training=training)

    def forward_head(self, features, attention=None, training=False):
        """Everything after F: the attention branch, the attention mechanism
        and the perception branch.

        Args:
            features: F, from `forward_features`.
            attention: optional `(N, h, w)` map in `[0, 1]` that replaces the
                attention branch's own in the attention mechanism (the
                intervention test); the attention branch is then not run.
            training: bool.

        Returns:
            A dict: `logits` and `features` (GAP) and `feature_map` (the last
            stage) of the perception branch and, when the attention branch
            runs, `attention` `(N, h, w, 1)` and its `attention_logits` and
            `attention_features`.
        """
        outputs = {}
        if attention is None:
            branch = self.attention_branch(features, training=training)
            attention = self._used_map(branch["attention"])
            outputs.update(attention=attention, attention_logits=branch["logits"],
                           attention_features=branch["features"])
        else:
            attention = ops.cast(attention, features.dtype)[..., None]
        attended = self.attention_mechanism(features, attention)
        outputs.update(self.perception_branch(attended, training=training))
        return outputs

    def forward_with_cams(self, images):
        """`call`'s outputs (inference mode) plus `class_activation_maps`,
        `(N, h, w, K)`: CAM of every class, the perception branch's last
        stage weighted by its classifier, non-negative."""
        features = self.forward_features(images)
        head = self.forward_head(features)
        outputs = predictions(head)
        kernel = ops.cast(self.perception_branch.classifier.kernel, "float32")
        maps = ops.einsum("nhwc,ck->nhwk", ops.cast(head["feature_map"], "float32"), kernel)
        outputs["class_activation_maps"] = ops.relu(maps)
        return outputs

    def _used_map(self, attention):
        """The map the attention mechanism uses: min-max normalised per
        image with `map_normalization="all"`, else as the branch gives it."""
        if self.map_normalization == "all":
            return ops.cast(losses.normalise_map(attention), attention.dtype)
        return attention

    def forward_amb(self, features, attention, training=False, fixed_mask=False):
        """The attention mining branch (AMB): the perception branch, with its
        shared weights, on `F* = F - T(A) * F` (eq. 1).

        Args:
            features: F, from `forward_features`.
            attention: the attention map A, `(N, h, w, 1)`.
            training: bool.
            fixed_mask: bool, hold T(A) fixed (no gradient to the map): the
                erasing term's pass, which trains the classifier on what
                the map left.

        Returns:
            The AMB's logits, `(N, K)`.
        """
        if self.map_normalization == "mask":
            attention = losses.normalise_map(attention)
        mask = ops.cast(self.mining_mask(attention), features.dtype)
        if fixed_mask:
            mask = ops.stop_gradient(mask)
        masked = features - mask * features
        # Masked features must not move the moving statistics that serve the
        # perception branch's unmasked input at test time.
        naive = self.naive_bn_statistics
        with contextlib.nullcontext() if naive else frozen_statistics():
            return self.perception_branch(masked, training=training)["logits"]

    def classify_with_attention(self, images, attention):
        """The perception branch's logits with the attention map replaced.

        The intervention test of faithfulness: a model that uses its map
        changes its prediction when the map is swapped (for a uniform one,
        another image's, `1 - A`, or the object's mask).

        Args:
            images: `(N, H, W, 3)` images, as for `call`.
            attention: `(N, h, w)` maps in `[0, 1]` at the attention map's
                resolution (`model(images)["attention"].shape[1:]`).

        Returns:
            `(N, K)` logits (inference mode).
        """
        return self.forward_head(self.forward_features(images), attention)["logits"]

    @property
    def description(self):
        """One line naming the architecture and its switches, e.g.
        `"ABN, bypass"` or `"AMB + PC + COT, no bypass"`."""
        from keras_amb.model_file import describe

        return describe(self.get_config())

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        config.update({name: getattr(self, name) for name in ABN_DEFAULTS})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**saved_arguments(config))
