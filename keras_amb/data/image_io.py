"""Reading any common image file as 8-bit RGB, with errors that name it."""

import os

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class ImageReadError(ValueError):
    """An image file that cannot be read; the message names the file."""


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


def read_image(path, max_pixels=None):
    """Reads an image file (first frame of an animation) as RGB uint8.

    Args:
        path: the file's path.
        max_pixels: optional cap on width * height (guards against
            decompression bombs); None uses Pillow's own limit.

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
            if max_pixels and image.width * image.height > max_pixels:
                raise ImageReadError(
                    f"{path}: {image.width}x{image.height} pixels is over the "
                    f"limit of {max_pixels}"
                )
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
