"""The images a review looks at: keys, true classes, pixels on demand.

Images are addressed by their key (`keras_amb.data.map_store`), never by a
path from a request: an `ImageSet` knows every key it holds, and nothing
else can be read through it. Pixels are read when asked for, so a folder of
10,000 images costs only its listing.
"""

import io
import os

import numpy as np
from PIL import Image

from keras_amb.data import map_store
from keras_amb.data.image_io import read_image
from keras_amb.errors import ReviewError

# A corrected map upload is a grey PNG; larger ones are refused unread.
MAX_UPLOAD_BYTES = 16 * 2**20


class ImageSet:
    """Keyed images, each with its true class where known.

    Args:
        name: str, what the images are (a dataset and split, a folder).
        keys: list of str, the images' keys in dataset order.
        labels: list of int or None (unlabelled), the true classes.
        load: callable `load(index) -> uint8 (H, W, 3)`.
        dataset: str or None, the `--dataset` the keys belong to (what
            `train --attention-targets` can read them with); None for a
            folder of unlabelled images.
        split: str or None.
        mask: optional callable `mask(index) -> uint8 (H, W)`, the object's
            mask (synthetic objects, CUB segmentations, Stanford Dogs boxes).
    """

    def __init__(self, name, keys, labels, load, dataset=None, split=None, mask=None):
        self.name = name
        self.keys = list(keys)
        self.labels = list(labels) if labels is not None else [None] * len(self.keys)
        self._load = load
        self.dataset = dataset
        self.split = split
        self._index = {key: i for i, key in enumerate(self.keys)}
        self.mask = mask

    def __len__(self):
        return len(self.keys)

    def index_of(self, key):
        """The position of `key`; `KeyError` for a key the set does not hold."""
        return self._index[key]

    def image(self, index):
        return self._load(index)

    @property
    def labelled(self):
        return any(label is not None for label in self.labels)


def from_folder(directory):
    """Every image under `directory`, keyed by its relative path, unlabelled."""
    from keras_amb.inference import expand_inputs

    directory = os.fspath(directory)
    paths = expand_inputs([directory])
    keys = [map_store.folder_key(p, directory) for p in paths]
    map_store.check_unique(dict(zip(keys, paths)))
    return ImageSet(directory, keys, None, lambda i: read_image(paths[i]))


def from_source(source, split, dataset, synthetic_params=None):
    """The examples of one split of a `DataSource` (`synthetic_params`: the
    config's `synthetic:` mapping, for the synthetic dataset).

    Image folders and the synthetic dataset are read one image at a time;
    other datasets (TFDS) are read once, kept PNG-encoded in memory.
    """
    if split not in source.sizes:
        from keras_amb.errors import DatasetError

        raise DatasetError(
            f"--split {split}: dataset {source.name!r} has the splits {', '.join(source.sizes)}"
        )
    name = f"{source.name} ({split})"
    if source.files is not None:
        items = source.files[split]
        return ImageSet(name, source.keys(split), [label for _, label in items],
                        lambda i: read_image(items[i][0]), dataset=dataset, split=split)
    if dataset == "synthetic":
        from keras_amb.data import synthetic

        config = synthetic.make_config(synthetic_params)
        draw = synthetic.draw_example
        size = config.split_size(split)
        labels = [int(draw(config, split, i)["label"]) for i in range(size)]
        return ImageSet(name, source.keys(split), labels,
                        lambda i: draw(config, split, i)["image"], dataset=dataset, split=split,
                        mask=lambda i: draw(config, split, i)["object_mask"])
    encoded, masks, labels = [], [], []
    for example in source.examples(split).as_numpy_iterator():
        encoded.append(png_bytes(example["image"]))
        if "object_mask" in example:
            masks.append(png_bytes(example["object_mask"].astype(np.uint8)))
        labels.append(int(example["label"]))
    keys = [map_store.example_key(split, i) for i in range(len(encoded))]
    return ImageSet(name, keys, labels, lambda i: unpng(encoded[i])[..., :3],
                    dataset=dataset, split=split,
                    mask=(lambda i: unpng(masks[i])) if len(masks) == len(encoded) else None)


def image_set(run, dataset=None, data_dir=None, split="train", folder=None):
    """The `ImageSet` of `keras-amb review`.

    Args:
        run: an opened `keras_amb.app.runs.Run`.
        dataset: str or None, a `--dataset` (default: the run's own).
        data_dir: str or None, TFDS's folder (default: the run's).
        split: str, the split to review.
        folder: str or None, a folder of unlabelled images instead.
    """
    from keras_amb.data import sources
    from keras_amb.errors import DatasetError

    if folder is not None:
        return from_folder(folder)
    config = run.config()
    if dataset is None:
        dataset = config.get("dataset")
        if dataset is None:
            raise DatasetError(
                f"{run.name}: a bare model file names no dataset; pass --dataset or --images"
            )
    synthetic_params = config.get("synthetic") if dataset == "synthetic" else None
    if os.path.isdir(str(dataset)) and dataset not in sources.TFDS_DATASETS:
        # Not every file decoded up front: a broken one shows as an error
        # when its turn comes.
        source = sources.folder_source(dataset, check_images=False, progress=False)
    else:
        source = sources.load_source(
            dataset, data_dir=data_dir or config.get("data_dir"),
            synthetic_params=synthetic_params, progress=False,
        )
    shown = dataset if dataset in ("synthetic",) + tuple(sources.TFDS_DATASETS) \
        else os.path.abspath(dataset)
    return from_source(source, split, shown, synthetic_params)


def png_bytes(array):
    """An 8-bit grey or RGB array as PNG bytes (pictures and maps the page
    gets, and the images kept in memory)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def unpng(data):
    """PNG bytes as an array."""
    with Image.open(io.BytesIO(data)) as picture:
        return np.asarray(picture)


def read_map_upload(data, height, width):
    """An uploaded corrected map as uint8 `(height, width)`; `ReviewError`
    unless it is a grey 8-bit PNG of that size, at most `MAX_UPLOAD_BYTES`."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ReviewError(f"map upload of {len(data)} bytes is over the limit of "
                          f"{MAX_UPLOAD_BYTES}")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ReviewError("the corrected map must be a PNG file")
    try:
        with Image.open(io.BytesIO(data)) as picture:
            if picture.format != "PNG":
                raise ReviewError("the corrected map must be a PNG file")
            if picture.size != (width, height):
                raise ReviewError(
                    f"the corrected map is {picture.width}x{picture.height}; the image "
                    f"is {width}x{height}")
            if picture.mode not in ("L", "LA", "RGB", "RGBA"):
                raise ReviewError(f"the corrected map must be 8-bit grey, not mode "
                                  f"{picture.mode}")
            picture.load()
            array = np.asarray(picture)
    except ReviewError:
        raise
    except Exception as error:
        raise ReviewError(f"the corrected map is not a readable PNG ({error})") from None
    if array.ndim == 3:
        colour = array[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1])
                and np.array_equal(colour[..., 0], colour[..., 2])):
            raise ReviewError("the corrected map must be grey (equal red, green, blue)")
        array = colour[..., 0]
    return np.ascontiguousarray(array, np.uint8)


def thumbnail_png(image, grey, size):
    """`grey` (uint8 map of the image's size) blended over `image`, scaled
    to `size` pixels on its longer side (up by whole factors), as a PNG."""
    from keras_amb.explain.overlay import overlay

    picture = Image.fromarray(overlay(image, grey.astype(np.float32) / 255.0, alpha=0.5))
    scale = size / max(picture.size)
    if scale < 1:
        picture = picture.resize((max(1, round(picture.width * scale)),
                                  max(1, round(picture.height * scale))))
    elif scale > 1:
        factor = int(scale)
        picture = picture.resize((picture.width * factor, picture.height * factor),
                                 Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def review_order(wrong, confidence, scored, energy, low_confidence):
    """Indices in the order to review: misclassified (`wrong`) first, most
    confident first; then the correctly classified under `low_confidence`,
    least confident first; then the rest by `energy` inside the object
    (least first) where known (not NaN), else by confidence; unscored
    images last; ties in dataset order."""
    n = len(wrong)
    tier = np.where(wrong, 0, np.where(confidence < low_confidence, 1, 2))
    tier = np.where(scored, tier, 3)
    rest = np.where(np.isnan(energy), confidence, energy)
    within = np.where(tier == 0, -confidence, np.where(tier == 1, confidence, rest))
    return np.lexsort((np.arange(n), within, tier))
