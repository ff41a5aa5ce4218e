"""Explanation maps: the model's attention, and CAM / Grad-CAM baselines.

All maps are `(N, h, w)` float32 in `[0, 1]`. The attention map is the
model's own (one forward pass). CAM is the perception branch's class
activation map (its last stage weighted by the classifier's weights for the
class). Grad-CAM is taken at the feature extractor's output F (stage 3), the
map the attention mechanism acts on, so it has the attention map's
resolution; at the last stage of a GAP + dense head it would equal CAM.
"""

import numpy as np
from keras import ops

from keras_amb.models import train_steps

METHODS = ("attention", "cam", "gradcam")


def _normalise(maps):
    maps = np.asarray(maps, dtype=np.float32)
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / np.maximum(high - low, 1e-8)


def _perception_inputs(model, images):
    features = model.feature_extractor(images, training=False)
    attention = model.attention_branch(features, training=False)["attention"]
    return features, model.attention_mechanism(features, attention)


def _predicted(model, images, class_ids):
    if class_ids is not None:
        return np.asarray(class_ids, dtype=np.int32)
    out = model.predict_on_batch(images)
    return np.argmax(np.asarray(out["probabilities"]), axis=-1).astype(np.int32)


def attention(model, images):
    """The model's attention maps (raw values, already in (0, 1))."""
    return np.asarray(ops.convert_to_numpy(model.predict_on_batch(images)["attention"]))


def cam(model, images, class_ids=None):
    """Class activation maps of the perception branch, min-max normalised."""
    class_ids = _predicted(model, images, class_ids)
    _, attended = _perception_inputs(model, ops.convert_to_tensor(images))
    x = attended
    for block in model.perception_branch.stage:
        x = block(x, training=False)
    kernel = ops.convert_to_numpy(model.perception_branch.classifier.kernel)  # (C, K)
    weights = kernel[:, class_ids].T  # (N, C)
    maps = np.einsum("nhwc,nc->nhw", ops.convert_to_numpy(x).astype(np.float32), weights)
    return _normalise(np.maximum(maps, 0.0))


def grad_cam(model, images, class_ids=None):
    """Grad-CAM at the feature extractor's output F, min-max normalised."""
    class_ids = _predicted(model, images, class_ids)
    features = model.feature_extractor(ops.convert_to_tensor(images), training=False)
    one_hot = ops.one_hot(ops.convert_to_tensor(class_ids), model.num_classes)

    def class_score(f):
        att = model.attention_branch(f, training=False)["attention"]
        attended = model.attention_mechanism(f, att)
        logits = model.perception_branch(attended, training=False)["logits"]
        return ops.sum(logits * one_hot, axis=-1)

    grads = ops.convert_to_numpy(train_steps.input_gradient(class_score, features))
    feats = ops.convert_to_numpy(features).astype(np.float32)
    weights = grads.astype(np.float32).mean(axis=(1, 2))  # (N, C)
    maps = np.einsum("nhwc,nc->nhw", feats, weights)
    return _normalise(np.maximum(maps, 0.0))


def compute(model, images, method, class_ids=None):
    if method == "attention":
        return attention(model, images)
    if method == "cam":
        return cam(model, images, class_ids)
    if method == "gradcam":
        return grad_cam(model, images, class_ids)
    raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
