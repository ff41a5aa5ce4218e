"""The paper's losses, in backend-agnostic `keras.ops`.

Names follow the paper: complement entropy (COT, eq. 4), attention mining
(eq. 2), prototype conformity (eq. 3). See the repository's `METHOD.md` for the decisions where
the paper is silent.
"""

import keras
from keras import ops

from keras_amb.arguments import PC_DISTANCES

_LOG_EPS = 1e-10
_NORMALIZER_EPS = 1e-7
_NORM_EPS = 1e-12


def _true_class_mask(y_true, num_classes, dtype):
    y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    return ops.one_hot(y_true, num_classes, dtype=dtype)


def _weighted_mean(values, sample_weight=None):
    """Mean over the batch of per-example `values`, each weighted by
    `sample_weight` (Keras's convention: `sum(w * v) / N`)."""
    values = ops.cast(values, "float32")
    if sample_weight is None:
        return ops.mean(values)
    weights = ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
    return ops.mean(values * weights)


def _safe_norm(x, axis=-1):
    """Euclidean norm whose gradient is finite at 0."""
    return ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis), _NORM_EPS))


def cross_entropy(y_true, logits, sample_weight=None):
    """Mean sparse categorical cross-entropy from logits, in float32."""
    logits = ops.cast(logits, "float32")
    y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    per_example = keras.losses.sparse_categorical_crossentropy(
        y_true, logits, from_logits=True
    )
    return _weighted_mean(per_example, sample_weight)


def complement_entropy(y_true, logits, zero_true_class=False, sample_weight=None):
    """The value Complement Objective Training minimizes.

    `(1 / (N * K)) * sum_i sum_{j != g_i} q_ij * log(q_ij + 1e-10)` with
    `p = softmax(logits)` and `q = p / ((1 - p_g) + 1e-7)`, or `q = p` when
    `zero_true_class=True` (the attention mining branch, where the paper sets
    the true-class probability to 0 so the normalizer is 1). The value is
    `<= 0`; minimizing it maximizes the entropy of the wrong classes.

    Args:
        y_true: int tensor `(N,)`, the true classes `g`.
        logits: float tensor `(N, K)`.
        zero_true_class: bool, use `q = p` (AMB case).
        sample_weight: optional `(N,)` per-example weights.

    Returns:
        A scalar float32 tensor.
    """
    logits = ops.cast(logits, "float32")
    num_classes = ops.shape(logits)[-1]
    probabilities = ops.softmax(logits, axis=-1)
    true_mask = _true_class_mask(y_true, num_classes, "float32")
    if zero_true_class:
        q = probabilities
    else:
        p_true = ops.sum(probabilities * true_mask, axis=-1, keepdims=True)
        q = probabilities / ((1.0 - p_true) + _NORMALIZER_EPS)
    terms = q * ops.log(q + _LOG_EPS) * (1.0 - true_mask)
    per_example = ops.sum(terms, axis=-1) / ops.cast(num_classes, "float32")
    return _weighted_mean(per_example, sample_weight)


def attention_mining_loss(y_true, logits, sample_weight=None):
    """Eq. 2: mean over the batch of `softmax(logits)[i, g_i]`.

    Args:
        y_true: int tensor `(N,)`.
        logits: float tensor `(N, K)`, the attention mining branch's logits.
        sample_weight: optional `(N,)` per-example weights.

    Returns:
        A scalar float32 tensor in `[0, 1]` (without weights).
    """
    logits = ops.cast(logits, "float32")
    probabilities = ops.softmax(logits, axis=-1)
    true_mask = _true_class_mask(y_true, ops.shape(logits)[-1], "float32")
    return _weighted_mean(ops.sum(probabilities * true_mask, axis=-1), sample_weight)


def prototype_conformity(
    features, y_true, centers, contrastive_weight=1.0, sample_weight=None,
    distance="euclidean",
):
    """Eq. 3, prototype conformity loss with learnable class centers.

    `mean_i [ d(f_i, c_g) - w / (K - 1) * sum_{j != g}
    (d(f_i, c_j) + d(c_g, c_j)) ]` with `w = contrastive_weight` and `d` the
    Euclidean distance (eq. 3 as printed) or its square (the PC authors'
    code; see METHOD.md).

    Args:
        features: float tensor `(N, D)`.
        y_true: int tensor `(N,)`.
        centers: float tensor `(K, D)`, one center per class.
        contrastive_weight: float, weight `w` of the contrastive part.
        sample_weight: optional `(N,)` per-example weights.
        distance: `"euclidean"` or `"squared"`.

    Returns:
        A scalar float32 tensor.

    Example:
    >>> f = keras.ops.convert_to_tensor([[3.0, 4.0]])
    >>> c = keras.ops.convert_to_tensor([[0.0, 0.0], [3.0, 0.0]])
    >>> float(prototype_conformity(f, [0], c, contrastive_weight=0.0))
    5.0
    """
    if distance not in PC_DISTANCES:
        raise ValueError(
            f"`distance` must be one of {PC_DISTANCES}. Received: distance={distance!r}"
        )
    features = ops.cast(features, "float32")
    centers = ops.cast(centers, "float32")
    num_classes = ops.shape(centers)[0]
    true_mask = _true_class_mask(y_true, num_classes, "float32")  # (N, K)

    def dist(x):
        if distance == "squared":
            return ops.sum(ops.square(x), axis=-1)
        return _safe_norm(x)

    # b_ij = d(f_i, c_j), (N, K)
    b = dist(features[:, None, :] - centers[None, :, :])
    # c_gj = d(c_g, c_j), (N, K)
    true_centers = ops.matmul(true_mask, centers)  # (N, D)
    c = dist(true_centers[:, None, :] - centers[None, :, :])
    a = ops.sum(b * true_mask, axis=-1)
    others = ops.sum((b + c) * (1.0 - true_mask), axis=-1)
    scale = contrastive_weight / ops.cast(num_classes - 1, "float32")
    return _weighted_mean(a - scale * others, sample_weight)


def area_loss(attention, target=0.0):
    """The attention map's area, the term that keeps a map from covering
    everything (ours, not the paper's; METHOD.md, "The map terms").

    With `target=0`, the mean of the map, `mean_{i,p} A_ip`: every attended
    position costs the same. With `0 < target < 1`, the area constraint of
    extremal perturbations (Fong et al., ICCV 2019): each map's values,
    sorted, against a reference that is 0 on the smallest `1 - target`
    fraction of positions and 1 on the rest, `mean_{i,p} (sort(A_i)_p -
    r_p)^2`, so a map covers about `target` of the image and is free to
    choose where.

    Args:
        attention: float tensor `(N, H, W)` (or `(N, H, W, 1)`) in `[0, 1]`.
        target: float in `[0, 1)`, the area fraction the map should cover;
            0 for the plain mean.

    Returns:
        A scalar float32 tensor.

    Example:
    >>> a = keras.ops.convert_to_tensor([[[0.0, 1.0], [0.5, 0.5]]])
    >>> float(area_loss(a))
    0.5
    >>> float(area_loss(a, target=0.5))  # sorted 0, .5, .5, 1 against 0, 0, 1, 1
    0.125
    """
    if not 0.0 <= target < 1.0:
        raise ValueError(f"`target` must be in [0, 1). Received: target={target!r}")
    attention = ops.cast(attention, "float32")
    if target == 0.0:
        return ops.mean(attention)
    size = 1
    for dim in attention.shape[1:]:
        size *= int(dim)
    flat = ops.reshape(attention, (-1, size))
    ones = int(round(target * size))
    reference = ops.convert_to_tensor([0.0] * (size - ones) + [1.0] * ones, dtype="float32")
    return ops.mean(ops.square(ops.sort(flat, axis=-1) - reference[None, :]))


def smoothness_loss(attention):
    """Total variation of the attention map: the mean squared difference
    between neighbouring positions, across and down,
    `mean (A_{y,x+1} - A_{y,x})^2 + mean (A_{y+1,x} - A_{y,x})^2`.

    Args:
        attention: float tensor `(N, H, W)` (or `(N, H, W, 1)`).

    Returns:
        A scalar float32 tensor.

    Example:
    >>> a = keras.ops.convert_to_tensor([[[0.0, 1.0], [0.0, 1.0]]])
    >>> float(smoothness_loss(a))  # across: 1, 1; down: 0, 0
    1.0
    """
    attention = ops.cast(attention, "float32")
    if len(attention.shape) == 4:
        attention = attention[..., 0]
    across = ops.mean(ops.square(attention[:, :, 1:] - attention[:, :, :-1]))
    down = ops.mean(ops.square(attention[:, 1:, :] - attention[:, :-1, :]))
    return across + down


def normalise_map(attention, epsilon=1e-6):
    """Min-max normalisation of each map over its positions:
    `(A - min A) / (max A - min A + epsilon)`, so the smallest value of each
    map is 0 and the largest about 1, whatever the map's offset and
    contrast (GAIN reimplementations normalise before the threshold).

    Args:
        attention: float tensor `(N, H, W, ...)`.
        epsilon: float, keeps a constant map finite (it becomes 0).

    Returns:
        A float32 tensor of `attention`'s shape.

    Example:
    >>> a = keras.ops.convert_to_tensor([[[0.6, 0.7], [0.8, 0.7]]])
    >>> [round(float(v), 3) for v in keras.ops.reshape(normalise_map(a), (-1,))]
    [0.0, 0.5, 1.0, 0.5]
    """
    attention = ops.cast(attention, "float32")
    axes = tuple(range(1, len(attention.shape)))
    low = ops.min(attention, axis=axes, keepdims=True)
    high = ops.max(attention, axis=axes, keepdims=True)
    return (attention - low) / (high - low + epsilon)


def attention_target_loss(attention, target, kind="l2", weights=None):
    """Mitsuhara et al.: distance between an attention map and a corrected map.

    Args:
        attention: float tensor `(N, H, W)` in `[0, 1]`.
        target: float tensor `(N, H', W')` in `[0, 1]`; resized to `(H, W)`.
        kind: `"l1"` or `"l2"` (mean absolute or mean squared error).
        weights: optional `(N,)` per-image weights (0 for images without a
            corrected map). Unlike the other losses here (`sum(w * l) / N`),
            the loss is then `sum(w * d) / max(sum(w), 1)`: the mean over
            the images that have a map, so its strength does not depend on
            how many images of the batch have one (METHOD.md).

    Returns:
        A scalar float32 tensor.
    """
    if kind not in ("l1", "l2"):
        raise ValueError(f"`kind` must be 'l1' or 'l2'. Received: kind={kind!r}")
    attention = ops.cast(attention, "float32")
    target = ops.cast(target, "float32")
    height, width = ops.shape(attention)[1], ops.shape(attention)[2]
    target = ops.image.resize(target[..., None], (height, width))[..., 0]
    diff = attention - target
    per_image = ops.mean(ops.abs(diff) if kind == "l1" else ops.square(diff), axis=(1, 2))
    if weights is None:
        return ops.mean(per_image)
    weights = ops.cast(ops.reshape(weights, (-1,)), "float32")
    return ops.sum(per_image * weights) / ops.maximum(ops.sum(weights), 1.0)


# The name before 2026-12 (one noun for the maps, one for their loss:
# attention targets, attention_target_loss).
attention_map_loss = attention_target_loss
