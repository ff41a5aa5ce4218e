"""Predicting on image files: what `keras-amb predict` and `visualize` share.

Images are read with `keras_amb.data.read_image` (any common format), their
shorter side resized to `image_size * resize_ratio` and center-cropped, as
evaluation and the exported SavedModel do; the model's config holds both.
"""

import dataclasses
import os

import numpy as np

from keras_amb.data.image_io import IMAGE_EXTENSIONS
from keras_amb.data.image_io import ImageReadError
from keras_amb.data.image_io import read_image


def expand_inputs(inputs, exclude=()):
    """Files as given, folders expanded to their image files (sorted).

    Folders in `exclude` (a command's own output folders, which may lie
    inside an input folder) are not walked into, so figures and maps of
    earlier runs are never taken as inputs; nor are hidden folders
    (`.ipynb_checkpoints/`, `.git/`), as folder datasets skip them.
    """
    skip = {os.path.realpath(os.fspath(e)) for e in exclude if e}
    paths = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item) and not item.lower().endswith(IMAGE_EXTENSIONS):
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = sorted(
                    d for d in dirnames if not d.startswith(".")
                    and os.path.realpath(os.path.join(dirpath, d)) not in skip)
                paths.extend(
                    os.path.join(dirpath, f) for f in sorted(filenames)
                    if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
                )
        else:
            paths.append(item)
    return paths


def preprocess(image, size, resize_ratio):
    """An RGB uint8 image as the model sees it: float32 (S, S, 3) in [0, 255]."""
    import tensorflow as tf

    from keras_amb.data.pipeline import center_crop

    return center_crop(tf.constant(image, tf.float32), size, resize_ratio).numpy()


@dataclasses.dataclass
class Prediction:
    """One image's prediction, or the reason it has none.

    Attributes:
        path: str, the image file (for an array: `"<array i>"`).
        top_k: list of `(class name, probability)`, most likely first.
        probabilities: `(K,)` the perception branch's class probabilities.
        attention_peak: `(x, y)`, the attention map's maximum as fractions of
            the model's center crop (0 = left / top, 1 = right / bottom).
        attention: the `(h, w)` attention map, in `[0, 1]`.
        original_shape: `(height, width)` of the image file, to place the map
            on it (`explain.visualize.save_map`) without decoding it again.
        maps: with `methods`, each method's `(h, w)` map (`model.explain`).
        error: str or None, why the file could not be read.
    """

    path: str
    top_k: list = None
    probabilities: np.ndarray = dataclasses.field(default=None, repr=False)
    attention_peak: tuple = None
    attention: np.ndarray = dataclasses.field(default=None, repr=False)
    original_shape: tuple = None
    error: str = None
    maps: dict = dataclasses.field(default=None, repr=False)

    @property
    def label(self):
        """The predicted class's name (None for an image that failed)."""
        return self.top_k[0][0] if self.top_k else None

    def record(self):
        """A flat dict for JSON or CSV."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "top_k": [{"class": name, "score": round(score, 6)} for name, score in self.top_k],
            "attention_peak": {"x": round(self.attention_peak[0], 4),
                               "y": round(self.attention_peak[1], 4)},
        }


def attention_peak(attention):
    """`(x, y)` of a map's maximum, as fractions of its width and height
    (pixel centers: a 14x14 map's peak at column 0 is x = 0.5 / 14)."""
    h, w = attention.shape
    row, col = np.unravel_index(int(np.argmax(attention)), attention.shape)
    return ((col + 0.5) / w, (row + 0.5) / h)


def predict(model, images, top_k=5, batch_size=32, methods=None):
    """What the model says about raw images, preprocessed as it was trained.

    The model's input is a center crop of `model.image_size` pixels after the
    shorter side is resized to `image_size * resize_ratio`: a raw image of
    another size given to `model.predict` is not that, and its answer is
    wrong without a warning. This function (and every `keras-amb` command)
    applies the model's own preprocessing.

    Args:
        model: a keras-amb model (`keras_amb.load_model`).
        images: an image file path, an `(H, W, 3)` RGB array in [0, 255] of
            any size, or a list of them.
        top_k: int, classes per image.
        batch_size: int, images per forward pass.
        methods: optional sequence of `explain.maps.METHODS`: each image's
            `maps` then holds them (`model.explain`).

    Returns:
        A list of `Prediction`s, one per image, in order: `label`,
        `top_k`, `probabilities` and the `attention` map; a file that cannot
        be read has its `error` instead.

    Example:
    >>> model = keras_amb.load_model("saved_models/synthetic-mining-...")  # doctest: +SKIP
    >>> [p] = keras_amb.predict(model, "photo.jpg")  # doctest: +SKIP
    >>> p.label, p.top_k[:2], p.attention.shape  # doctest: +SKIP
    """
    single = isinstance(images, (str, os.PathLike)) or (
        isinstance(images, np.ndarray) and images.ndim == 3)
    items = [images] if single else list(images)
    named = [(os.fspath(x), None) if isinstance(x, (str, os.PathLike))
             else (f"<array {i}>", np.asarray(x)) for i, x in enumerate(items)]
    if methods is not None:
        from keras_amb.explain import maps

        maps.check_methods(methods)
    return list(_predict(model, named, top_k, batch_size, methods=methods))


def predict_files(model, paths, top_k=5, batch_size=32, progress=None):
    """Predictions for image files, batched; unreadable files get an error.

    Args:
        model: an `AttentionBranchNetwork` (its class names, input size and
            resize ratio are used).
        paths: list of image file paths.
        top_k: int, classes per image.
        batch_size: int, images per forward pass.
        progress: optional callable `progress(done, total)`.

    Yields:
        `Prediction`s, in the order of `paths`.
    """
    yield from _predict(model, [(p, None) for p in paths], top_k, batch_size, progress)


def _predict(model, items, top_k, batch_size, progress=None, methods=None):
    """`Prediction`s for `(name, array or None)` items; None reads `name`."""
    import keras

    batch, pending = [], []
    done = 0

    def flush():
        if not batch:
            return []
        if methods is None:
            out, explained = model.predict_on_batch(np.stack(batch)), None
        else:
            from keras_amb.explain import maps

            out, explained = maps.explain(model, np.stack(batch), methods)
        probabilities = np.asarray(keras.ops.convert_to_numpy(out["probabilities"]))
        attention = np.asarray(keras.ops.convert_to_numpy(out["attention"]))
        tops = model.decode_predictions(probabilities, top_k)
        results = [
            Prediction(path=p, top_k=t, probabilities=q, attention_peak=attention_peak(a),
                       attention=a, original_shape=shape,
                       maps=None if explained is None else {k: v[i] for k, v in explained.items()})
            for i, ((p, shape), t, q, a) in enumerate(zip(pending, tops, probabilities, attention))
        ]
        batch.clear()
        pending.clear()
        return results

    for path, image in items:
        try:
            if image is None:
                image = read_image(path)
            elif image.ndim != 3 or image.shape[-1] != 3:
                raise ImageReadError(f"{path}: must be (height, width, 3) RGB, got shape "
                                     f"{image.shape}")
        except ImageReadError as error:
            yield from flush()
            done += 1
            yield Prediction(path=path, error=str(error))
            continue
        batch.append(preprocess(image, model.image_size, model.resize_ratio))
        pending.append((path, image.shape[:2]))
        if len(batch) == batch_size:
            results = flush()
            done += len(results)
            yield from results
            if progress:
                progress(done, len(items))
    results = flush()
    done += len(results)
    yield from results
    if progress:
        progress(done, len(items))
