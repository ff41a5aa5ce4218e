"""The model of the paper's Figure 1: ABN and, with its switches, the
proposed model (`AttentionMiningNetwork`).

Why this module is long (about 700 lines, 250 of them docstrings): it
is one `keras.Model` subclass, and what Keras requires on the class stays on
it: the constructor storing the 20-odd arguments `get_config` returns, the
entry points of the graph (`call`, `forward_features`, `forward_head`,
`forward_amb`, `forward_with_cams`, `forward_step`), the metric trackers,
`compile` with its two optimizers, checkpoint helpers and `get_config`.
What is not the class is elsewhere: the loss (eq. 5) in `objective.py`, the
backend-specific step in `train_steps.py`, the argument checks in
`keras_amb/arguments.py`, the layers in `keras_amb/layers/`.

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
from keras_amb import optimizers
from keras_amb.arguments import AMB_GRADIENTS  # noqa: F401 (re-exported)
from keras_amb.arguments import ABN_DEFAULTS
from keras_amb.arguments import ABN_DEFAULTS as _D
from keras_amb.arguments import MINING_DEFAULTS
from keras_amb.arguments import MAX_IMAGE_SIZE  # noqa: F401 (re-exported)
from keras_amb.arguments import MAX_RESIZE_RATIO  # noqa: F401 (re-exported)
from keras_amb.arguments import check_arguments
from keras_amb.arguments import saved_arguments
from keras_amb.errors import NonFiniteLossError  # noqa: F401 (re-exported)
from keras_amb.layers.attention_branch import AttentionBranch
from keras_amb.layers.attention_mechanism import AttentionMechanism
from keras_amb.layers.batch_normalization import frozen_statistics
from keras_amb.layers.class_centers import ClassCenters
from keras_amb.layers.perception_branch import PerceptionBranch
from keras_amb.layers.mining_mask import MiningMask
from keras_amb.models import backbones
from keras_amb.models import objective
from keras_amb.models.objective import FEATURE_STATISTICS
from keras_amb.models.objective import STEPS
from keras_amb.models.objective import feature_statistics
from keras_amb.models import train_steps



def _attention_outputs(attention, attention_logits):
    return {
        "attention": attention[..., 0],
        "attention_logits": attention_logits,
        "attention_probabilities": ops.softmax(attention_logits),
    }


def _predictions(head):
    """The outputs users see, from `forward_head`'s: the perception branch's
    logits and probabilities (the reported predictions), the attention map
    `(N, h, w)` and the attention branch's logits and probabilities."""
    outputs = _attention_outputs(head["attention"], head["attention_logits"])
    outputs["logits"] = head["logits"]
    outputs["probabilities"] = ops.softmax(head["logits"])
    return outputs


@keras.saving.register_keras_serializable(package="keras_amb")
class AttentionBranchNetwork(keras_private.BuiltBeforeFit, keras.Model):
    """Attention Branch Network, optionally with the paper's improvements.

    Figure 1 of the paper: a feature extractor (stem + stages 1..3) gives F;
    the attention branch gives the attention map A and its own logits; the
    attention mechanism gives `F' = A * F (+ F with the bypass)`; the
    perception branch (stage 4, GAP, dense) classifies F'. With `amb=True`
    the perception branch is applied again, with shared weights, to
    `F* = F - T(A) * F` (the attention mining branch, AMB).

    The train step (eq. 5) minimizes `L_att + L_per (+ L_PC) (+ w_amb * L_am)`
    with the main optimizer; with `cot=True` it then takes the complement
    step (COT's name for its second update) on the same batch, with a fresh
    forward pass and the complement optimizer, on the complement entropy of
    the AMB output (L_am is then left out of eq. 5). With
    `amb_gradient="attention"` and no COT, L_am takes the complement step's
    place, on the attention map's weights alone.
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
        check_arguments(
            num_classes=num_classes, backbone=backbone, image_size=image_size,
            bypass=bypass, amb=amb, pc=pc, cot=cot, mask_threshold=mask_threshold,
            mask_slope=mask_slope, hard_mask=hard_mask, amb_weight=amb_weight,
            amb_gradient=amb_gradient, pc_distance=pc_distance,
            pc_weight=pc_weight, pc_contrastive_weight=pc_contrastive_weight,
            center_lr_multiplier=center_lr_multiplier,
            attention_target_weight=attention_target_weight,
            area_weight=area_weight, area_target=area_target,
            smoothness_weight=smoothness_weight, map_normalization=map_normalization,
            erasing_weight=erasing_weight,
            naive_bn_statistics=naive_bn_statistics, dropout=dropout,
            resize_ratio=resize_ratio,
        )
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` must name all {num_classes} classes. Received "
                f"{len(class_names)} names: {list(class_names)[:5]}..."
            )
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.image_size = int(image_size)
        self.bypass = bypass
        self.amb = amb
        self.pc = pc
        self.cot = cot
        self.mask_threshold = float(mask_threshold)
        self.mask_slope = float(mask_slope)
        self.hard_mask = hard_mask
        self.amb_weight = float(amb_weight)
        self.amb_gradient = amb_gradient
        self.pc_weight = float(pc_weight)
        self.pc_contrastive_weight = float(pc_contrastive_weight)
        self.pc_distance = pc_distance
        self.center_lr_multiplier = float(center_lr_multiplier)
        self.attention_target_weight = float(attention_target_weight)
        self.area_weight = float(area_weight)
        self.area_target = float(area_target)
        self.smoothness_weight = float(smoothness_weight)
        self.map_normalization = map_normalization
        self.erasing_weight = float(erasing_weight)
        self.naive_bn_statistics = naive_bn_statistics
        self.dropout = float(dropout)
        self.bn_momentum = bn_momentum
        self.class_names = (
            [str(n) for n in class_names] if class_names is not None else None
        )
        self.resize_ratio = float(resize_ratio)
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

        # === Metrics ===
        # Grouped as Keras groups compiled metrics, each with its direction,
        # so `ModelCheckpoint(monitor="val_top1")` and
        # `EarlyStopping(monitor="val_per_loss")` infer max / min by themselves.
        names = ["loss", "att_loss", "per_loss"]
        if self.pc:
            names.append("pc_loss")
        if self.amb:
            names.append("amb_loss")
        if self.cot:
            names.append("cot_loss")
        if self.attention_target_weight > 0:
            names.append("attention_target_loss")
        for name in ("area", "smoothness", "erasing"):
            if getattr(self, f"{name}_weight") > 0:
                names.append(f"{name}_loss")
        self.loss_trackers = {}
        for name in names:
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
        return _predictions(self.forward_head(features, training=training))

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
        outputs = _predictions(head)
        kernel = ops.cast(self.perception_branch.classifier.kernel, "float32")
        maps = ops.einsum("nhwc,ck->nhwk", ops.cast(head["feature_map"], "float32"), kernel)
        outputs["class_activation_maps"] = ops.relu(maps)
        return outputs

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
                outputs = _predictions(head)
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
                outputs = _attention_outputs(attention, branch["logits"])
            if needs(step, "amb_logits"):
                outputs["amb_logits"] = self.forward_amb(features, attention, training=training)
            if needs(step, "erased_logits"):
                outputs["erased_logits"] = self.forward_amb(
                    features, attention, training=training, fixed_mask=True)
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

    # === The steps of section 3.5 (their losses: `objective.py`) ===

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
            loss, metrics: not accepted: the model computes the paper's losses
                and its own metrics (see the class docstring).
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

    # === Inference ===

    def get_class_names(self):
        """The class names, or `class_0 ... class_{K-1}` when none were given."""
        if self.class_names is not None:
            return list(self.class_names)
        return [f"class_{i}" for i in range(self.num_classes)]

    def decode_predictions(self, probabilities, top_k=5):
        """The top-k `(class name, probability)` pairs of each row.

        Args:
            probabilities: `(N, K)` array, e.g. `model.predict(x)["probabilities"]`.
            top_k: int, how many classes per row.

        Returns:
            A list (one per row) of lists of `(name, probability)`, most
            likely first.
        """
        import numpy as np

        probabilities = np.asarray(ops.convert_to_numpy(probabilities), dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[1] != self.num_classes:
            raise ValueError(
                f"`probabilities` must have shape (N, {self.num_classes}). "
                f"Received: shape={probabilities.shape}"
            )
        k = max(1, min(int(top_k), self.num_classes))
        names = self.get_class_names()
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [[(names[j], float(row[j])) for j in top] for row, top in zip(probabilities, order)]

    # === Checkpoints ===

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

    @property
    def description(self):
        """One line naming the architecture and its switches, e.g.
        `"ABN, bypass"` or `"AMB + PC + COT, no bypass"`."""
        from keras_amb.model_file import describe

        return describe(self.get_config())

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "backbone": self.backbone,
                "image_size": self.image_size,
                "bypass": self.bypass,
                "amb": self.amb,
                "pc": self.pc,
                "cot": self.cot,
                "mask_threshold": self.mask_threshold,
                "mask_slope": self.mask_slope,
                "hard_mask": self.hard_mask,
                "amb_weight": self.amb_weight,
                "amb_gradient": self.amb_gradient,
                "pc_weight": self.pc_weight,
                "pc_contrastive_weight": self.pc_contrastive_weight,
                "pc_distance": self.pc_distance,
                "center_lr_multiplier": self.center_lr_multiplier,
                "attention_target_weight": self.attention_target_weight,
                "area_weight": self.area_weight,
                "area_target": self.area_target,
                "smoothness_weight": self.smoothness_weight,
                "map_normalization": self.map_normalization,
                "erasing_weight": self.erasing_weight,
                "naive_bn_statistics": self.naive_bn_statistics,
                "dropout": self.dropout,
                "bn_momentum": self.bn_momentum,
                "class_names": self.class_names,
                "resize_ratio": self.resize_ratio,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**saved_arguments(config))


@keras.saving.register_keras_serializable(package="keras_amb")
class AttentionMiningNetwork(AttentionBranchNetwork):
    """The proposed model: ABN without bypass, with AMB, PC loss and COT.

    Same arguments as `AttentionBranchNetwork`, with the proposed model's
    defaults (`arguments.MINING_DEFAULTS`, the same as `keras-amb train`'s):
    `bypass=False, amb=True, pc=True, cot=True` as in the paper, and the
    default objective, `area_weight=1.0, amb_gradient="attention"` (METHOD.md,
    "The default objective"). `**arguments.PAPER_OBJECTIVE` gives the
    paper's eq. 5; switch `pc` or `cot` off for the ablations.

    Example:
    >>> abn = AttentionBranchNetwork(num_classes=4, backbone="resnet_tiny",
    ...                              image_size=32)
    >>> model = AttentionMiningNetwork(num_classes=4, backbone="resnet_tiny",
    ...                                image_size=32, mask_threshold=0.4)
    >>> model = model.transfer_weights_from(abn)
    """

    def __init__(self, num_classes, **kwargs):
        # `arguments.MINING_DEFAULTS`: the switches on, the default objective.
        defaults = {k: v for k, v in MINING_DEFAULTS.items() if ABN_DEFAULTS.get(k) != v}
        super().__init__(num_classes, **{**defaults, **kwargs})
