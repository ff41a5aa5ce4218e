"""What each of the train step's two updates minimizes (section 3.5).

The first update minimizes eq. 5 of the paper,

    L = L_att + L_per + pc_weight * L_PC + amb_weight * L_am
        (+ attention_target_weight * L_target with corrected maps)
        (+ area_weight * L_area + smoothness_weight * L_tv
           + erasing_weight * L_erase, the map terms)

where L_att and L_per are the cross entropies of the attention and
perception branches, L_PC is the prototype conformity loss summed over the
two PC features (the perception branch's pooled feature and the attention
branch's pooled class maps), and L_am is the attention mining loss on the
AMB output. The map terms are ours, not the paper's (METHOD.md, "The map
terms"): the map's area (`losses.area_loss`), its total variation
(`losses.smoothness_loss`), and the erasing term, CE of the perception
branch on the erased features with the mask held fixed.

The complement step minimizes COT's complement entropy of the AMB output,
with the true class zeroed (the masked features must not name the true
class and must not favour any other), or, without COT and with
`amb_gradient="attention"`, `amb_weight * L_am` on the attention map alone.
L_am is then left out of eq. 5 (the paper: "COT replaces L_am"): that is
decided once, in `Objective.weights`, which every other question (which
outputs a step's forward pass computes, what the force log pulls back)
reads.

Every component is a mean over the batch, weighted by the sample weights
(and so by `class_weight`) when given. `Objective` holds the switches and
weights it needs and nothing else; the model builds one from its
arguments.
"""

import collections

import numpy as np
from keras import ops

from keras_amb import losses
from keras_amb.arguments import ABN_DEFAULTS as _D
from keras_amb.arguments import as_table_type
from keras_amb.models import compiled

# The feature statistics logged per epoch (`history.csv`): a PC loss that
# collapses the features shows as a falling norm and a rising zero fraction.
FEATURE_STATISTICS = (
    "per_feature_norm", "per_feature_zero_fraction",
    "att_feature_norm", "att_feature_zero_fraction",
)

# Every loss component by name, in the order the logs list them.
TERMS = ("att_loss", "per_loss", "pc_loss", "amb_loss", "cot_loss",
         "attention_target_loss", "area_loss", "smoothness_loss", "erasing_loss")

# The updates of section 3.5's iteration, and "eval" (eq. 5, with every
# other component logged), for validation.
STEPS = ("main", "complement", "eval")

StepLoss = collections.namedtuple("StepLoss", ["loss", "terms", "parts", "outputs"])
StepLoss.__doc__ = """What one step's loss method returns.

`loss` is the sum of `terms` (each weighted term the step minimizes, by
name); `parts` holds every unweighted component computed (the logged
values, with `"loss"` outside the complement step); `outputs` is the
forward pass's dict."""


class Objective:
    """The losses of section 3.5's two updates, for one model's switches.

    The arguments are the model's of the same names
    (`AttentionBranchNetwork`), and nothing else of it.

    Args:
        amb: bool, the attention mining branch is on.
        pc: bool, the prototype conformity loss is on.
        cot: bool, complement objective training is on.
        amb_gradient: `"all"` or `"attention"` (L_am in its own step).
        amb_weight: float, L_am's weight.
        pc_weight: float, the PC loss's weight.
        pc_contrastive_weight: float, the contrastive part's weight in PC.
        pc_distance: `"euclidean"` or `"squared"`.
        attention_target_weight: float, the corrected-map term's weight.
        area_weight: float, the area term's weight.
        area_target: float, the area term's target.
        smoothness_weight: float, the total variation's weight.
        erasing_weight: float, the erasing term's weight.

    Example:
    >>> objective = Objective(amb=True, pc=True, cot=True, amb_weight=1e-4)
    >>> sorted(objective.weights("main")), objective.weights("complement")
    (['att_loss', 'per_loss', 'pc_loss'], {'cot_loss': 1.0})
    """

    ARGUMENTS = (
        "amb", "pc", "cot", "amb_gradient", "amb_weight", "pc_weight",
        "pc_contrastive_weight", "pc_distance", "attention_target_weight",
        "area_weight", "area_target", "smoothness_weight", "erasing_weight",
    )

    def __init__(self, amb=_D["amb"], pc=_D["pc"], cot=_D["cot"],
                 amb_gradient=_D["amb_gradient"], amb_weight=_D["amb_weight"],
                 pc_weight=_D["pc_weight"], pc_contrastive_weight=_D["pc_contrastive_weight"],
                 pc_distance=_D["pc_distance"],
                 attention_target_weight=_D["attention_target_weight"],
                 area_weight=_D["area_weight"], area_target=_D["area_target"],
                 smoothness_weight=_D["smoothness_weight"],
                 erasing_weight=_D["erasing_weight"]):
        given = locals()
        for name in self.ARGUMENTS:  # defaults and types: `arguments.ABN_DEFAULTS`
            setattr(self, name, as_table_type(name, given[name]))

    @classmethod
    def of(cls, model):
        """The objective of a model (or any object with the arguments)."""
        return cls(**{name: getattr(model, name) for name in cls.ARGUMENTS})

    @property
    def has_complement_step(self):
        """Whether each iteration takes the complement step: COT's, or L_am's
        on the attention map alone (`amb_gradient="attention"`)."""
        return self.cot or (self.amb and self.amb_gradient == "attention")

    def weights(self, step):
        """Each term the update of `step` minimizes, with its weight: the
        one place where eq. 5 is assembled and L_am put in or left out.

        `"main"` and `"eval"`: `att_loss` and `per_loss` (1), `pc_loss`
        (`pc_weight`), `amb_loss` (`amb_weight`, only without a complement
        step), and each map term and the corrected-map term whose weight is
        above 0. `"complement"`: `cot_loss` (1) with COT, else `amb_loss`
        (`amb_weight`); empty without a complement step.
        """
        if step not in STEPS:
            raise ValueError(f"`step` must be one of {STEPS}. Received: step={step!r}")
        if step == "complement":
            if not self.has_complement_step:
                return {}
            return {"cot_loss": 1.0} if self.cot else {"amb_loss": self.amb_weight}
        weights = {"att_loss": 1.0, "per_loss": 1.0}
        if self.pc:
            weights["pc_loss"] = self.pc_weight
        if self.amb and not self.has_complement_step:
            weights["amb_loss"] = self.amb_weight
        for name in ("attention_target", "area", "smoothness", "erasing"):
            weight = getattr(self, f"{name}_weight")
            if weight > 0:
                weights[f"{name}_loss"] = weight
        return weights

    def tracked(self):
        """Every component this objective ever logs, in `TERMS` order (the
        model's loss trackers): validation logs them all."""
        return [name for name in TERMS if name in self.logged("eval")]

    def logged(self, step):
        """The components `step` computes: its terms, and in the complement
        step and validation also the mining losses it does not minimize."""
        names = set(self.weights(step))
        if step != "main" and self.amb:
            names.add("amb_loss")
            if self.cot:
                names.add("cot_loss")
        return names

    def needs(self, step, output):
        """Whether the forward pass of `step` must compute `output`
        (`"amb_logits"`: the AMB pass; `"erased_logits"`: the erasing pass;
        `"head"`: the perception branch on the attended features)."""
        logged = self.logged(step)
        if output == "amb_logits":
            return bool(logged & {"amb_loss", "cot_loss"})
        if output == "erased_logits":
            return "erasing_loss" in logged
        if output == "head":
            return step != "complement"
        raise ValueError(f"Unknown output {output!r}")

    def parts(self, outputs, y, step, attention_target=None,
              has_attention_target=None, sample_weight=None):
        """Each unweighted component `step` computes (`logged(step)`), from
        the forward pass's `outputs`; the corrected-map term only when
        corrected maps are given."""
        w = sample_weight
        names = self.logged(step)
        parts = {}
        if "amb_loss" in names:
            parts["amb_loss"] = losses.attention_mining_loss(
                y, outputs["amb_logits"], sample_weight=w)
        if "cot_loss" in names:
            parts["cot_loss"] = losses.complement_entropy(
                y, outputs["amb_logits"], zero_true_class=True, sample_weight=w)
        if "att_loss" in names:
            parts["att_loss"] = losses.cross_entropy(y, outputs["attention_logits"], w)
            parts["per_loss"] = losses.cross_entropy(y, outputs["logits"], w)
        if "pc_loss" in names:
            parts["pc_loss"] = sum(
                losses.prototype_conformity(
                    outputs[f"{name}_features"], y,
                    centers_for_loss(outputs[f"{name}_centers"], self.pc_weight),
                    self.pc_contrastive_weight, sample_weight=w,
                    distance=self.pc_distance,
                )
                for name in ("perception", "attention")
            )
        if "area_loss" in names:
            parts["area_loss"] = losses.area_loss(outputs["attention"], self.area_target)
        if "smoothness_loss" in names:
            parts["smoothness_loss"] = losses.smoothness_loss(outputs["attention"])
        if "erasing_loss" in names:
            parts["erasing_loss"] = losses.cross_entropy(y, outputs["erased_logits"], w)
        if "attention_target_loss" in names and attention_target is not None:
            weights = has_attention_target
            if w is not None:
                w = ops.reshape(ops.cast(w, "float32"), (-1,))
                weights = w if weights is None else weights * w
            parts["attention_target_loss"] = losses.attention_target_loss(
                outputs["attention"], attention_target, weights=weights)
        return parts

    def terms(self, parts, step):
        """The weighted terms of `step` present in `parts`."""
        return {name: weight * parts[name]
                for name, weight in self.weights(step).items() if name in parts}

    def loss(self, outputs, y, step, **extra):
        """`StepLoss` of `step` from the forward pass's `outputs`; `extra`:
        `sample_weight`, `attention_target`, `has_attention_target`."""
        parts = self.parts(outputs, y, step, **extra)
        terms = self.terms(parts, step)
        total = sum(terms.values())
        if step != "complement":
            parts["loss"] = total
        return StepLoss(total, terms, parts, outputs)


def centers_for_loss(centers, pc_weight):
    """The centers as the PC loss sees them: the same values, with a
    gradient that is the PC loss's without `pc_weight` (the PC authors
    divide the centers' gradient by the loss weight), so the centers move at
    the same speed whatever `pc_weight` is."""
    centers = ops.cast(centers, "float32")
    if pc_weight in (0.0, 1.0):
        return centers
    frozen = ops.stop_gradient(centers)
    return frozen + (centers - frozen) / pc_weight


def initialize_centers(model, batches):
    """Sets the PC centers to the per-class means of the two PC features.

    The PC authors start from a converged softmax model; centers drawn at
    random sit near the origin, far from features of norm ~3 that point
    nearly one way, and the proximity term then pulls every feature to zero.
    Called after the weight transfer from the pre-trained ABN. Classes absent
    from `batches` keep their centers.

    Args:
        model: a model with `pc=True`.
        batches: iterable of `(images, labels)` or `({"images": ...},
            labels)` batches, e.g. the training split without augmentation.

    Returns:
        A dict: the number of images used, and the mean norm of each PC
        feature (`per_feature_norm`, `att_feature_norm`).
    """
    if not model.pc:
        raise ValueError("`initialize_centers` needs a model with `pc=True`.")
    sums = {"perception": 0.0, "attention": 0.0}
    norms = {"perception": 0.0, "attention": 0.0}
    counts = np.zeros(model.num_classes)
    features = compiled.compiled(model, "pc_features", _pc_features)
    for batch in batches:
        x, y = batch[0], batch[1]
        images = x["images"] if isinstance(x, dict) else x
        outputs = features(ops.convert_to_numpy(images))
        labels = np.asarray(ops.convert_to_numpy(y)).reshape(-1).astype(int)
        one_hot = np.eye(model.num_classes)[labels]
        counts += one_hot.sum(0)
        for name in sums:
            feats = np.asarray(ops.convert_to_numpy(outputs[f"{name}_features"]),
                               dtype=np.float64)
            sums[name] = sums[name] + one_hot.T @ feats
            norms[name] += np.linalg.norm(feats, axis=1).sum()
    total = counts.sum()
    if total == 0:
        raise ValueError("`initialize_centers` got no images.")
    seen = counts > 0
    for name, layer in (("perception", model.perception_centers),
                        ("attention", model.attention_centers)):
        centers = np.array(ops.convert_to_numpy(layer.centers), dtype=np.float64)
        centers[seen] = sums[name][seen] / counts[seen, None]
        layer.centers.assign(centers.astype("float32"))
    return {
        "images": int(total),
        "per_feature_norm": float(norms["perception"] / total),
        "att_feature_norm": float(norms["attention"] / total),
    }


def _pc_features(model, images):
    outputs = model.forward_step(images, "main", training=False)
    return {k: outputs[k] for k in ("perception_features", "attention_features")}


def feature_statistics(outputs):
    """Mean L2 norm and zero fraction of the two PC features in `outputs`
    (the perception branch's pooled feature, `per_`, and the attention
    branch's pooled class maps, `att_`); empty when they are absent."""
    statistics = {}
    for prefix, key in (("per", "perception_features"), ("att", "attention_features")):
        if key not in outputs:
            continue
        features = ops.cast(outputs[key], "float32")
        statistics[f"{prefix}_feature_norm"] = ops.mean(
            ops.sqrt(ops.sum(ops.square(features), axis=-1)))
        statistics[f"{prefix}_feature_zero_fraction"] = ops.mean(
            ops.cast(ops.abs(features) <= 1e-12, "float32"))
    return statistics
