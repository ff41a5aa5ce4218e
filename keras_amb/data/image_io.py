"""Reading any common image file as 8-bit RGB, with errors that name it."""

import os

import numpy as np

from keras_amb.errors import ImageReadError  # noqa: F401 (re-exported)
from keras_amb.settings import LIMITS
from keras_amb.settings import limit

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


# What one image may cost, checked from its header before it is decoded:
# width * height (a 20000 x 20000 PNG compresses to 48 KB) and the ratio of
# its longer side to its shorter one (a 1 x 60000 PNG is 320 bytes, but its
# shorter side is resized to the model's input size: 64 x 3,840,000 floats).
# KERAS_AMB_MAX_PIXELS and KERAS_AMB_MAX_ASPECT_RATIO change the defaults;
# `read_image` and `keras_amb.app.export.export_saved_model` take them as arguments.
DEFAULT_MAX_PIXELS = LIMITS["KERAS_AMB_MAX_PIXELS"][0]
DEFAULT_MAX_ASPECT_RATIO = LIMITS["KERAS_AMB_MAX_ASPECT_RATIO"][0]


def image_limits(max_pixels=None, max_aspect_ratio=None):
    """`(max_pixels, max_aspect_ratio)`: the arguments, else the environment's
    KERAS_AMB_MAX_PIXELS / KERAS_AMB_MAX_ASPECT_RATIO, else the defaults
    (50 million pixels, 20:1).

    Example:
    >>> image_limits(1000, 4)
    (1000, 4.0)
    """
    if max_pixels is None:
        max_pixels = limit("KERAS_AMB_MAX_PIXELS")
    if max_aspect_ratio is None:
        max_aspect_ratio = limit("KERAS_AMB_MAX_ASPECT_RATIO")
    if not (max_pixels >= 1 and max_aspect_ratio >= 1):  # NaN fails too
        raise ValueError(
            "`max_pixels` and `max_aspect_ratio` must be >= 1. Received: "
            f"max_pixels={max_pixels!r}, max_aspect_ratio={max_aspect_ratio!r}"
        )
    return int(max_pixels), float(max_aspect_ratio)


def check_image_size(width, height, max_pixels=None, max_aspect_ratio=None, name="image"):
    """Raises `ImageReadError` if a `width x height` image costs too much."""
    max_pixels, max_aspect_ratio = image_limits(max_pixels, max_aspect_ratio)
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name}: {width}x{height} pixels is over the limit of {max_pixels} "
            "(KERAS_AMB_MAX_PIXELS)"
        )
    if width > 0 and height > 0 and max(width, height) > max_aspect_ratio * min(width, height):
        raise ImageReadError(
            f"{name}: {width}x{height} pixels is too elongated (longer side over "
            f"{max_aspect_ratio:g} times the shorter; KERAS_AMB_MAX_ASPECT_RATIO)"
        )


def to_rgb_array(image):
    """A PIL image (any mode) as an `(H, W, 3)` uint8 array."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / high * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(array[..., None], 3, axis=-1)
    # Alpha is dropped (not composited), as TensorFlow's decoders do, so the
    # exported SavedModel sees the same pixels as the command-line tools.
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_image(path, max_pixels=None, max_aspect_ratio=None):
    """Reads an image file (first frame of an animation) as RGB uint8.

    The size in the file's header is checked before anything is decoded
    (see `image_limits`), so a decompression bomb or an extremely elongated
    image costs nothing.

    Args:
        path: the file's path.
        max_pixels: int, cap on width * height (None: `image_limits`).
        max_aspect_ratio: float, cap on longer side / shorter side (None:
            `image_limits`).

    Raises:
        ImageReadError: naming the file and what is wrong with it.
    """
    from PIL import Image

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a directory, not an image file")
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise ImageReadError(f"{path}: cannot be read ({error.strerror})") from None
    if size == 0:
        raise ImageReadError(f"{path}: empty file")
    try:
        with Image.open(path) as image:
            check_image_size(image.width, image.height, max_pixels, max_aspect_ratio, path)
            image.seek(0)
            image.load()
            array = to_rgb_array(image)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{path}: too large to decode safely ({error})") from None
    except Exception as error:  # Pillow raises many types for broken files.
        reason = str(error) or error.__class__.__name__
        if "cannot identify image file" in reason:
            reason = "not an image (or a format Pillow cannot read)"
        raise ImageReadError(f"{path}: {reason}") from None
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageReadError(f"{path}: image has no pixels")
    return array


def check_image(path):
    """None if `path` reads as an image, else the reason (a string)."""
    try:
        read_image(path)
    except ImageReadError as error:
        return str(error)
    return None
