"""Faithfulness (Insertion / Deletion) and localisation of explanation maps.

Two Insertion/Deletion protocols (METHOD.md):
- the paper's threshold sweep: for thresholds t in [0, 1], classify the image
  keeping only the pixels whose upsampled map is >= t (Insertion) or only
  those below t (Deletion); the rest become the image's mean colour.
  Correctness against t; area under the curve. Thresholds apply to the map
  as given: the raw attention map (the scale of sigma), or CAM / Grad-CAM
  normalised to [0, 1] (`maps.SCALES`).
- RISE's pixel ranking (Petsiuk et al. 2018): pixels ranked by saliency are
  inserted into a blurred copy (Gaussian, sigma 5, 11x11) or deleted to the
  mean colour, a fraction at a time; the softmax probability of the class
  predicted on the original image against the fraction; trapezoid AUC.
Everything is batched: one forward pass per threshold or step per batch, and
every function returns per-image values, so results can be compared image by
image (paired statistics in `keras_amb.app.ablation`).
"""

import numpy as np

from keras_amb.explain.maps import upsample

DEFAULT_THRESHOLDS = 11
DEFAULT_RISE_STEPS = 16
BLUR_SIGMA = 5.0
BLUR_SIZE = 11
# A part counts as covered when the map's mass density inside it is at least
# this many times its density over the whole image.
COVERAGE_DENSITY = 2.0


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
    """Area under `y` (trapezoid rule) over `x` (default: [0, 1] evenly)."""
    y = np.asarray(y, dtype=np.float64)
    x = np.linspace(0.0, 1.0, y.shape[-1]) if x is None else np.asarray(x)
    return np.trapezoid(y, x, axis=-1)


def _mean_colour(images):
    return images.mean(axis=(1, 2), keepdims=True)


def threshold_curves(predict, images, labels, maps, thresholds=DEFAULT_THRESHOLDS):
    """Per-threshold correctness for insertion and deletion, `(N, T)` each.

    `maps` are thresholded as given (see the module docstring).
    """
    n, height, width, _ = images.shape
    saliency = upsample(maps, height, width)[..., None]
    baseline = _mean_colour(images)
    ts = np.linspace(0.0, 1.0, thresholds)
    insertion = np.zeros((n, thresholds), np.float32)
    deletion = np.zeros((n, thresholds), np.float32)
    for j, t in enumerate(ts):
        keep = saliency >= t
        kept = np.where(keep, images, baseline)
        removed = np.where(keep, baseline, images)
        both = predict(np.concatenate([kept, removed]))
        insertion[:, j] = np.argmax(both[:n], -1) == labels
        deletion[:, j] = np.argmax(both[n:], -1) == labels
    return ts, insertion, deletion


def rise_curves(predict, images, maps, steps=DEFAULT_RISE_STEPS, target=None):
    """RISE insertion/deletion probability curves, `(N, steps + 1)` each.

    `target`: the classes whose probability is tracked (default: those
    predicted on the original images).
    """
    n, height, width, _ = images.shape
    pixels = height * width
    saliency = upsample(maps, height, width).reshape(n, pixels)
    order = np.argsort(-saliency, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(pixels)[None, :]
    rank = rank.reshape(n, height, width, 1)
    if target is None:
        target = np.argmax(predict(images), -1)
    blurred = gaussian_blur(images)
    baseline = _mean_colour(images)
    insertion = np.zeros((n, steps + 1), np.float32)
    deletion = np.zeros((n, steps + 1), np.float32)
    rows = np.arange(n)
    for k in range(steps + 1):
        top = rank < round(k * pixels / steps)
        inserted = np.where(top, images, blurred)
        deleted = np.where(top, baseline, images)
        both = predict(np.concatenate([inserted, deleted]))
        insertion[:, k] = both[:n][rows, target]
        deletion[:, k] = both[n:][rows, target]
    return insertion, deletion


def localisation(maps, masks, threshold=0.5):
    """Pointing game, attention energy inside, IoU of the thresholded map.

    Args:
        maps: `(N, h, w)` maps, as given (raw attention, normalised CAM).
        masks: `(N, H, W)` ground truth (>0.5 inside).
        threshold: the map value above which a pixel counts as attended (IoU).

    Returns:
        Per-image arrays `pointing`, `energy`, `iou`; images with an empty
        mask are NaN.
    """
    n, height, width = masks.shape
    up = np.maximum(upsample(maps, height, width), 0.0)
    inside = masks > 0.5
    peak = np.argmax(up.reshape(n, -1), axis=1)
    pointing = inside.reshape(n, -1)[np.arange(n), peak].astype(np.float32)
    energy = (up * inside).sum(axis=(1, 2)) / np.maximum(up.sum(axis=(1, 2)), 1e-8)
    hot = up >= threshold
    union = (hot | inside).sum(axis=(1, 2))
    iou = (hot & inside).sum(axis=(1, 2)) / np.maximum(union, 1)
    empty = ~inside.any(axis=(1, 2))
    for arr in (pointing, energy, iou):
        arr[empty] = np.nan
    return pointing, energy.astype(np.float32), iou.astype(np.float32)


def part_coverage(maps, part_masks, density=COVERAGE_DENSITY):
    """How the map covers each of several parts.

    Args:
        maps: `(N, h, w)` maps, as given.
        part_masks: list of `(N, H, W)` masks, one per part.
        density: a part is covered when `(mass in part / part area) /
            (total mass / image area) >= density`.

    Returns:
        `(energies, covered)`: per part, the `(N,)` fraction of the map's mass
        inside it, and the `(N,)` boolean whether it is covered (NaN / False
        where the part is absent).
    """
    n, height, width = part_masks[0].shape
    up = np.maximum(upsample(maps, height, width), 0.0)
    total = np.maximum(up.sum(axis=(1, 2)), 1e-8)
    energies, covered = [], []
    for mask in part_masks:
        inside = mask > 0.5
        area = inside.sum(axis=(1, 2))
        energy = (up * inside).sum(axis=(1, 2)) / total
        ratio = energy / np.maximum(area / float(height * width), 1e-8)
        energy = np.where(area > 0, energy, np.nan).astype(np.float32)
        energies.append(energy)
        covered.append((area > 0) & (ratio >= density))
    return energies, covered


def _entropy(flat):
    """Each row's entropy as a distribution over its cells, divided by its
    maximum, log(cells): 1 is uniform."""
    p = flat / np.maximum(flat.sum(axis=1, keepdims=True), 1e-12)
    return -(p * np.log(np.maximum(p, 1e-12))).sum(axis=1) / np.log(flat.shape[1])


def map_statistics(maps, object_masks=None, threshold=0.5):
    """What a map's shape says on its own, per image.

    A map that is nearly uniform looks like an explanation in a figure but
    carries little: these numbers make that visible.

    Args:
        maps: `(N, h, w)` maps, as given (raw attention, normalised CAM).
        object_masks: optional `(N, H, W)` object masks (>0.5 inside).
        threshold: the map value that counts as attended.

    Returns:
        A dict of `(N,)` arrays: `map_entropy` (the entropy of the map as a
        distribution over its cells, divided by its maximum, log(h*w): 1 is
        uniform), `map_area_above_half` (the fraction of cells >= threshold)
        , the same two on the map min-max normalised per image
        (`map_entropy_normalised`, `map_area_above_half_normalised`: a flat
        map with a little texture is no longer uniform there) and, with
        masks, `map_concentration` (the fraction of the mass inside
        the object divided by the object's fraction of the image: 1 is no
        better than uniform; NaN where the mask is empty).

    Example:
    >>> stats = map_statistics(np.ones((1, 4, 4)))
    >>> round(float(stats["map_entropy"][0]), 3), float(stats["map_area_above_half"][0])
    (1.0, 1.0)
    """
    maps = np.maximum(np.asarray(maps, dtype=np.float64), 0.0)
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    low = flat.min(axis=1, keepdims=True)
    scaled = (flat - low) / np.maximum(flat.max(axis=1, keepdims=True) - low, 1e-12)
    stats = {
        "map_entropy": _entropy(flat).astype(np.float32),
        "map_area_above_half": (flat >= threshold).mean(axis=1).astype(np.float32),
        "map_entropy_normalised": _entropy(scaled).astype(np.float32),
        "map_area_above_half_normalised": (scaled >= threshold).mean(axis=1).astype(np.float32),
    }
    if object_masks is not None:
        _, height, width = object_masks.shape
        up = np.maximum(upsample(maps.astype(np.float32), height, width), 0.0)
        inside = object_masks > 0.5
        area = inside.mean(axis=(1, 2))
        energy = (up * inside).sum(axis=(1, 2)) / np.maximum(up.sum(axis=(1, 2)), 1e-8)
        concentration = np.where(area > 0, energy / np.maximum(area, 1e-8), np.nan)
        stats["map_concentration"] = concentration.astype(np.float32)
    return stats


def part_density(energies, part_masks):
    """Each part's mass density relative to the image's: `(mass in part /
    part area) / (total mass / image area)`, per image (NaN where absent);
    1 is what a uniform map gives, `COVERAGE_DENSITY` counts as covered."""
    densities = []
    for energy, mask in zip(energies, part_masks):
        area = (mask > 0.5).mean(axis=(1, 2))
        density = np.where(area > 0, energy / np.maximum(area, 1e-8), np.nan)
        densities.append(density.astype(np.float32))
    return densities
