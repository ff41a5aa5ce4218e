"""Attention maps drawn over images."""

import numpy as np

from keras_amb.explain.maps import upsample

COLORMAP = "inferno"


def colorize(attention, colormap=COLORMAP):
    """A map in `[0, 1]` as RGB uint8 through a perceptual colormap."""
    import matplotlib

    cmap = matplotlib.colormaps[colormap]
    return (cmap(np.clip(attention, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def overlay(image, attention, alpha=0.5, colormap=COLORMAP):
    """The image (uint8 RGB) with a `(h, w)` map in `[0, 1]` blended over it."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    heat = colorize(upsample(np.asarray(attention)[None], image.shape[0], image.shape[1])[0],
                    colormap)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(blended, 0, 255).astype(np.uint8)
