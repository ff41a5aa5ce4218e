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
branch on the erased features with the mask held fixed. L_am is left out
of eq. 5 whenever the complement step takes it: with COT (the paper: "COT
replaces L_am") and with `amb_gradient="attention"`.

The complement step minimizes COT's complement entropy of the AMB output,
with the true class zeroed (the masked features must not name the true
class and must not favour any other), or, without COT and with
`amb_gradient="attention"`, `amb_weight * L_am` on the attention map alone.

Every component is a mean over the batch, weighted by the sample weights
(and so by `class_weight`) when given. The functions take the model for its
switches and weights (`amb`, `pc`, `cot`, `pc_weight`, ...); they hold no
state. `AttentionBranchNetwork.compute_losses` and `.weighted_terms` call
them.
"""

import numpy as np
from keras import ops

from keras_amb import losses
from keras_amb.models import compiled

# The feature statistics logged per epoch (`history.csv`): a PC loss that
# collapses the features shows as a falling norm and a rising zero fraction.
FEATURE_STATISTICS = (
    "per_feature_norm", "per_feature_zero_fraction",
    "att_feature_norm", "att_feature_zero_fraction",
)


def compute_losses(model, outputs, y, step="main", attention_target=None,
                   has_attention_target=None, sample_weight=None):
    """The loss the update of `step` minimizes, and each named component.

    Args:
        model: the `AttentionBranchNetwork` whose outputs these are.
        outputs: the dict of `model.forward_step(images, step)`.
        y: integer labels, `(N,)`.
        step: `"main"` (eq. 5), `"complement"` (the complement step) or
            `"eval"` (eq. 5 plus whatever else is defined, for logging).
        attention_target: corrected attention maps, `(N, h, w, 1)`, or None.
        has_attention_target: `(N,)`, 1 where an image has a corrected map.
        sample_weight: `(N,)` or None.

    Returns:
        `(loss, parts)`: the loss is the sum of `weighted_terms(model, parts,
        step)`; `parts` holds each unweighted component (and, except in
        `"complement"`, the total as `"loss"`).
    """
    w = sample_weight
    parts = {}
    if "amb_logits" in outputs:
        parts["amb_loss"] = losses.attention_mining_loss(y, outputs["amb_logits"],
                                                         sample_weight=w)
        if model.cot:
            parts["cot_loss"] = losses.complement_entropy(
                y, outputs["amb_logits"], zero_true_class=True, sample_weight=w)
    if step == "complement":
        return sum(weighted_terms(model, parts, step).values()), parts
    parts["att_loss"] = losses.cross_entropy(y, outputs["attention_logits"], w)
    parts["per_loss"] = losses.cross_entropy(y, outputs["logits"], w)
    if model.pc:
        parts["pc_loss"] = sum(
            losses.prototype_conformity(
                outputs[f"{name}_features"], y,
                centers_for_loss(outputs[f"{name}_centers"], model.pc_weight),
                model.pc_contrastive_weight, sample_weight=w, distance=model.pc_distance,
            )
            for name in ("perception", "attention")
        )
    if model.area_weight > 0:
        parts["area_loss"] = losses.area_loss(outputs["attention"], model.area_target)
    if model.smoothness_weight > 0:
        parts["smoothness_loss"] = losses.smoothness_loss(outputs["attention"])
    if "erased_logits" in outputs:
        parts["erasing_loss"] = losses.cross_entropy(y, outputs["erased_logits"], w)
    if model.attention_target_weight > 0 and attention_target is not None:
        weights = has_attention_target
        if w is not None:
            w = ops.reshape(ops.cast(w, "float32"), (-1,))
            weights = w if weights is None else weights * w
        parts["attention_target_loss"] = losses.attention_target_loss(
            outputs["attention"], attention_target, weights=weights)
    total = sum(weighted_terms(model, parts, step).values())
    parts["loss"] = total
    return total, parts


def weighted_terms(model, parts, step="main"):
    """Each term of the loss that the update of `step` minimizes, weighted.

    Eq. 5 (`"main"`, `"eval"`): `L_att + L_per + pc_weight * L_PC +
    amb_weight * L_am`, L_am only when no complement step takes it, plus
    `attention_target_weight *` the corrected-map loss and the map terms
    (`area_weight * L_area`, `smoothness_weight * L_tv`,
    `erasing_weight * L_erase`) where their weights are above 0. `"complement"`: the
    complement entropy with COT, else `amb_weight * L_am`.

    Args:
        model: the model, for its switches and weights.
        parts: the components from `compute_losses`.
        step: `"main"`, `"eval"` or `"complement"`.

    Returns:
        A dict, component name to its weighted value.
    """
    if step == "complement":
        if model.cot:
            return {"cot_loss": parts["cot_loss"]}
        return {"amb_loss": model.amb_weight * parts["amb_loss"]}
    terms = {"att_loss": parts["att_loss"], "per_loss": parts["per_loss"]}
    if "pc_loss" in parts:
        terms["pc_loss"] = model.pc_weight * parts["pc_loss"]
    if "amb_loss" in parts and not model.has_complement_step:
        terms["amb_loss"] = model.amb_weight * parts["amb_loss"]
    if "attention_target_loss" in parts:
        terms["attention_target_loss"] = (
            model.attention_target_weight * parts["attention_target_loss"])
    for name in ("area", "smoothness", "erasing"):
        if f"{name}_loss" in parts:
            terms[f"{name}_loss"] = getattr(model, f"{name}_weight") * parts[f"{name}_loss"]
    return terms


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
