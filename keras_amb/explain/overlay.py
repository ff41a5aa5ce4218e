"""Attention maps drawn over images."""

import numpy as np

COLORMAP = "inferno"


def upsample(attention, height, width):
    """A `(h, w)` map resized (bilinear) to `(height, width)`."""
    from PIL import Image

    attention = np.asarray(attention, dtype=np.float32)
    resized = Image.fromarray(attention, mode="F").resize((width, height), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def colorize(attention, colormap=COLORMAP):
    """A map in `[0, 1]` as RGB uint8 through a perceptual colormap."""
    import matplotlib

    cmap = matplotlib.colormaps[colormap]
    return (cmap(np.clip(attention, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def overlay(image, attention, alpha=0.5, colormap=COLORMAP):
    """The image (uint8 RGB) with the attention map blended over it."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    heat = colorize(upsample(attention, image.shape[0], image.shape[1]), colormap)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(blended, 0, 255).astype(np.uint8)
