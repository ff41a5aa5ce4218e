"""Explanation maps: the model's attention, and CAM / Grad-CAM baselines.

All maps are `(N, h, w)` float32. The attention map is the model's own, in
`(0, 1)`, on the scale of the mask threshold sigma, and is never rescaled.
CAM and Grad-CAM have no fixed scale and are min-max normalised to `[0, 1]`.

- CAM is the perception branch's class activation map (its last stage
  weighted by the classifier's weights for the class), a by-product of the
  forward pass (`model.forward_with_cams(x)`).
- Grad-CAM is taken at the feature extractor's output F (stage 3), the map
  the attention mechanism acts on, so it has the attention map's resolution;
  at the last stage of a GAP + dense head it would equal CAM.

Both run compiled (`compiled.compiled`): one forward pass for CAM, one
forward and one backward pass for Grad-CAM.
"""

import numpy as np
from keras import ops

from keras_amb.models import compiled
from keras_amb.models import gradients

METHODS = ("attention", "cam", "gradcam")
# How each method's maps are scaled (evaluation reports it).
SCALES = {
    "attention": "raw attention map (values in (0, 1), the scale of sigma)",
    "cam": "min-max normalised to [0, 1]",
    "gradcam": "min-max normalised to [0, 1]",
}


def check_methods(methods):
    """Raises `ValueError` quoting the first of `methods` not in `METHODS`."""
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")


def normalise(maps):
    """Each `(h, w)` map of `(N, h, w)` rescaled to `[0, 1]` (min-max)."""
    maps = np.asarray(maps, dtype=np.float32)
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / np.maximum(high - low, 1e-8)


def upsample(maps, height, width):
    """`(N, h, w)` maps resized bilinearly to `(N, height, width)`."""
    import tensorflow as tf

    maps = np.asarray(maps, dtype=np.float32)[..., None]
    return tf.image.resize(maps, (height, width), method="bilinear").numpy()[..., 0]


def _explain_forward(model, images):
    import keras

    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            return model.forward_with_cams(images)
    return model.forward_with_cams(images)


def _gradcam_pass(model, images, one_hot):
    features = model.forward_features(images)

    def class_score(f):
        return ops.sum(model.forward_head(f)["logits"] * one_hot, axis=-1)

    return features, gradients.input_gradient(class_score, features)


def explain(model, images, methods=METHODS, class_ids=None):
    """Maps of `images` by each of `methods`, with the model's predictions.

    Args:
        model: an `AttentionBranchNetwork`.
        images: `(N, H, W, 3)` RGB pixels in `[0, 255]`.
        methods: sequence of `METHODS`.
        class_ids: optional `(N,)` classes to explain (CAM, Grad-CAM);
            by default the predicted ones.

    Returns:
        `(outputs, maps)`: the forward pass's `probabilities`, `attention`
        and `attention_probabilities` as numpy arrays, and `{method: (N, h, w)}`.
    """
    check_methods(methods)
    images = np.asarray(images, dtype=np.float32)
    forward = compiled.compiled(model, "explain", _explain_forward)
    out = forward(images)
    outputs = {
        k: np.asarray(ops.convert_to_numpy(out[k]))
        for k in ("probabilities", "attention", "attention_probabilities")
    }
    if class_ids is None:
        class_ids = np.argmax(outputs["probabilities"], axis=-1)
    class_ids = np.asarray(class_ids, dtype=np.int64)
    maps = {}
    if "attention" in methods:
        maps["attention"] = outputs["attention"]
    if "cam" in methods:
        cams = np.asarray(ops.convert_to_numpy(out["class_activation_maps"]))
        maps["cam"] = normalise(cams[np.arange(len(images)), :, :, class_ids])
    if "gradcam" in methods:
        one_hot = np.eye(model.num_classes, dtype=np.float32)[class_ids]
        gradcam = compiled.compiled(model, "gradcam", _gradcam_pass)
        features, grads = gradcam(images, one_hot)
        features = np.asarray(ops.convert_to_numpy(features), dtype=np.float32)
        weights = np.asarray(ops.convert_to_numpy(grads), dtype=np.float32).mean(axis=(1, 2))
        maps["gradcam"] = normalise(
            np.maximum(np.einsum("nhwc,nc->nhw", features, weights), 0.0)
        )
    return outputs, maps


def compute(model, images, method, class_ids=None):
    """The `(N, h, w)` maps of one method (see `explain`)."""
    return explain(model, images, (method,), class_ids)[1][method]
