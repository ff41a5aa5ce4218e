"""Faithfulness (Insertion / Deletion) and localisation of explanation maps.

Two Insertion/Deletion protocols (METHOD.md):
- the paper's threshold sweep: for thresholds t in [0, 1], classify the image
  keeping only the pixels whose (upsampled, min-max normalised) map is >= t
  (Insertion) or only those below t (Deletion); the rest become the image's
  mean colour. Accuracy against t; area under the curve.
- RISE's pixel ranking (Petsiuk et al. 2018): pixels ranked by saliency are
  inserted into a blurred copy (Gaussian, sigma 5, 11x11) or deleted to the
  mean colour, a fraction at a time; the softmax probability of the class
  predicted on the original image against the fraction; trapezoid AUC.
Everything is batched: one forward pass per threshold or step per batch.
"""

import numpy as np

DEFAULT_THRESHOLDS = 11
DEFAULT_RISE_STEPS = 16
BLUR_SIGMA = 5.0
BLUR_SIZE = 11


def upsample(maps, height, width):
    """`(N, h, w)` maps resized bilinearly to `(N, height, width)`."""
    import tensorflow as tf

    maps = np.asarray(maps, dtype=np.float32)[..., None]
    return tf.image.resize(maps, (height, width), method="bilinear").numpy()[..., 0]


def normalise(maps):
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / np.maximum(high - low, 1e-8)


def gaussian_blur(images, sigma=BLUR_SIGMA, size=BLUR_SIZE):
    """Separable Gaussian blur of `(N, H, W, C)` images (reflect padding)."""
    radius = size // 2
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    out = np.asarray(images, dtype=np.float32)
    for axis in (1, 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        length = out.shape[axis]
        out = sum(
            w * np.take(padded, np.arange(i, i + length), axis=axis)
            for i, w in enumerate(taps)
        )
    return out


def auc(y, x=None):
    y = np.asarray(y, dtype=np.float64)
    x = np.linspace(0.0, 1.0, y.shape[-1]) if x is None else np.asarray(x)
    return np.trapezoid(y, x, axis=-1)


def _mean_colour(images):
    return images.mean(axis=(1, 2), keepdims=True)


def threshold_curves(predict, images, labels, maps, thresholds=DEFAULT_THRESHOLDS):
    """Per-threshold correctness for insertion and deletion, `(N, T)` each."""
    n, height, width, _ = images.shape
    saliency = normalise(upsample(maps, height, width))[..., None]
    baseline = _mean_colour(images)
    ts = np.linspace(0.0, 1.0, thresholds)
    insertion = np.zeros((n, thresholds), np.float32)
    deletion = np.zeros((n, thresholds), np.float32)
    for j, t in enumerate(ts):
        keep = (saliency >= t).astype(np.float32)
        kept = images * keep + baseline * (1 - keep)
        removed = images * (1 - keep) + baseline * keep
        insertion[:, j] = np.argmax(predict(kept), -1) == labels
        deletion[:, j] = np.argmax(predict(removed), -1) == labels
    return ts, insertion, deletion


def rise_curves(predict, images, maps, steps=DEFAULT_RISE_STEPS):
    """RISE insertion/deletion probability curves, `(N, steps + 1)` each."""
    n, height, width, _ = images.shape
    pixels = height * width
    saliency = upsample(maps, height, width).reshape(n, pixels)
    order = np.argsort(-saliency, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(pixels)[None, :]
    rank = rank.reshape(n, height, width, 1)
    target = np.argmax(predict(images), -1)
    blurred = gaussian_blur(images)
    baseline = np.broadcast_to(_mean_colour(images), images.shape)
    insertion = np.zeros((n, steps + 1), np.float32)
    deletion = np.zeros((n, steps + 1), np.float32)
    rows = np.arange(n)
    for k in range(steps + 1):
        top = (rank < round(k * pixels / steps)).astype(np.float32)
        inserted = images * top + blurred * (1 - top)
        deleted = baseline * top + images * (1 - top)
        insertion[:, k] = predict(inserted)[rows, target]
        deletion[:, k] = predict(deleted)[rows, target]
    return insertion, deletion


def localisation(maps, masks, threshold=0.5):
    """Pointing game, attention energy inside, IoU of the thresholded map.

    Args:
        maps: `(N, h, w)` maps; masks: `(N, H, W)` ground truth (>0.5 inside).
    Returns:
        Per-image arrays `pointing`, `energy`, `iou`; images with an empty
        mask are NaN.
    """
    n, height, width = masks.shape
    up = normalise(upsample(maps, height, width))
    inside = masks > 0.5
    flat = up.reshape(n, -1)
    peak = np.argmax(flat, axis=1)
    pointing = inside.reshape(n, -1)[np.arange(n), peak].astype(np.float32)
    energy = (up * inside).sum(axis=(1, 2)) / np.maximum(up.sum(axis=(1, 2)), 1e-8)
    hot = up >= threshold
    union = (hot | inside).sum(axis=(1, 2))
    iou = (hot & inside).sum(axis=(1, 2)) / np.maximum(union, 1)
    empty = ~inside.any(axis=(1, 2))
    for arr in (pointing, energy, iou):
        arr[empty] = np.nan
    return pointing, energy.astype(np.float32), iou.astype(np.float32)
