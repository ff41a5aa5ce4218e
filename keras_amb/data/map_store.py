"""Attention maps keyed by image, so that no two images share a map.

What `keras-amb predict --save-maps`, `visualize --save-maps` and `review`
write, and `train --attention-targets DIR` reads.

An image's **key** names it inside its dataset:

- in an image folder, its path relative to the dataset root, with `/`
  separators: `cardinal/0001.jpg` (`train/cardinal/0001.jpg` in a split
  layout); for `predict`/`visualize` inputs, relative to the folder given
  (a file given alone: its name);
- in the synthetic and TFDS datasets, its split and example id:
  `train/000123` (the example's position in keras-amb's split).

Its map is the grey PNG `DIR/<key without its image extension>.png`, over
the whole image (0: no attention, 255: full), so the maps mirror the
dataset's folders. `DIR/index.json` records each key's map, where it came
from, when and from which model, so a review can be continued or audited.

Maps saved by earlier releases lie flat, `DIR/<stem>.png`. They are still
read when each such file's stem names one image only; when two images share
a stem (`cardinal/0001.jpg`, `jay/0001.jpg`) the folder is refused, naming
them, rather than giving both the same map.
"""

import datetime
import json
import os
import threading

import numpy as np

from keras_amb.data.image_io import IMAGE_EXTENSIONS
from keras_amb.errors import DatasetError

INDEX_FILE = "index.json"


class MapKeyError(DatasetError):
    """Maps that cannot be told apart: two images with one map file, or an
    old flat layout that fits several images; the message names them."""


def key_part(name):
    """A file or folder name as one part of a key: a backslash, a control
    character, a byte that is not UTF-8 (`os.fsdecode`'s surrogates) and a
    leading dot are percent-encoded, so any name on disk has a key.

    Example:
    >>> key_part("a\\b.png"), key_part(".hidden.png"), key_part("plain.png")
    ('a%5Cb.png', '%2Ehidden.png', 'plain.png')
    """
    out = []
    for i, ch in enumerate(name):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"%{code - 0xDC00:02X}")
        elif ch == "\\" or code < 0x20 or code == 0x7F or (i == 0 and ch == "."):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def folder_key(path, root):
    """The key of image `path` in the folder `root`: its relative path
    (each part through `key_part`).

    Example:
    >>> folder_key("photos/jay/0001.jpg", "photos")
    'jay/0001.jpg'
    """
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if relative == os.curdir or relative.split(os.sep)[0] == os.pardir:
        raise ValueError(f"{path!r} is not inside {root!r}")
    return "/".join(key_part(part) for part in relative.split(os.sep))


def example_key(split, index):
    """The key of example `index` of `split` (synthetic and TFDS datasets).

    Example:
    >>> example_key("val", 7)
    'val/000007'
    """
    if not isinstance(split, str) or not split or "/" in split:
        raise ValueError(f"`split` must be a split name. Received: split={split!r}")
    index = int(index)
    if index < 0:
        raise ValueError(f"`index` must be >= 0. Received: index={index!r}")
    return f"{split}/{index:06d}"


def check_key(key):
    """Raises `ValueError` unless `key` is a plain relative key (no `..`, no
    absolute path, no backslash, no empty or hidden parts); returns it."""
    if not isinstance(key, str) or not key or "\\" in key or "\0" in key:
        raise ValueError(f"Not an image key: {key!r}")
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise ValueError(f"Not an image key: {key!r}")
    return key


def map_name(key):
    """The map file of `key`, relative to the maps folder.

    Example:
    >>> map_name("jay/0001.jpg"), map_name("train/000123")
    ('jay/0001.png', 'train/000123.png')
    """
    check_key(key)
    stem, ext = os.path.splitext(key)
    return (stem if ext.lower() in IMAGE_EXTENSIONS else key) + ".png"


def _flat_stem(key):
    base = key.rsplit("/", 1)[-1]
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in IMAGE_EXTENSIONS else base


def check_unique(keys):
    """Raises `MapKeyError` when two keys have one map file (`a.jpg` and
    `a.png` in one folder); `keys` maps each key to what to call it in the
    message (its path)."""
    owners = {}
    for key, label in keys.items():
        owners.setdefault(map_name(key), []).append(label)
    clashes = {name: labels for name, labels in owners.items() if len(labels) > 1}
    if clashes:
        name, labels = sorted(clashes.items())[0]
        raise MapKeyError(
            f"{len(clashes)} map file(s) would be shared by several images, e.g. {name} "
            f"by {', '.join(map(str, labels))}; rename one of them"
        )


def input_keys(inputs):
    """`[(path, key)]` for image files and folders, as `expand_inputs` lists
    them; a folder's images are keyed relative to it, a file by its name.

    Raises:
        MapKeyError: when two inputs get one key or one map file.
    """
    from keras_amb.inference import expand_inputs

    pairs = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item) and not item.lower().endswith(IMAGE_EXTENSIONS):
            pairs += [(p, folder_key(p, item)) for p in expand_inputs([item])]
        else:
            pairs.append((item, key_part(os.path.basename(item) or item)))
    seen = {}
    for path, key in pairs:
        if key in seen and seen[key] != path:
            raise MapKeyError(
                f"{seen[key]} and {path} would save their maps under the same name "
                f"{map_name(key)}; give their folders separately or rename one"
            )
        seen[key] = path
    check_unique({key: path for path, key in pairs})
    return pairs


def find_targets(directory, keys):
    """The map file of each key that has one in `directory`.

    Keyed maps (`DIR/<key>.png`) come first; an image without one takes a
    flat `DIR/<stem>.png` of an earlier release, if that stem belongs to
    this image only.

    Args:
        directory: str, the maps folder (`--attention-targets`).
        keys: iterable of the dataset's image keys (all splits).

    Returns:
        dict, key -> path of its map file.

    Raises:
        MapKeyError: a flat map whose stem several images share, naming the
            file and the images; or two keys with one map file.
    """
    keys = list(keys)
    check_unique({key: key for key in keys})
    found, by_stem = {}, {}
    for key in keys:
        path = os.path.join(directory, *map_name(key).split("/"))
        if os.path.isfile(path):
            found[key] = path
        by_stem.setdefault(_flat_stem(key), []).append(key)
    clashes, keyed = [], set(found.values())
    for stem, owners in sorted(by_stem.items()):
        path = os.path.join(directory, stem + ".png")
        if path in keyed or not os.path.isfile(path):
            continue
        if len(owners) > 1:
            clashes.append((path, owners))
        elif owners[0] not in found:
            found[owners[0]] = path
    if clashes:
        path, owners = clashes[0]
        shown = ", ".join(owners[:4]) + (", ..." if len(owners) > 4 else "")
        raise MapKeyError(
            f"--attention-targets {directory}: {len(clashes)} map(s) in the old flat "
            f"layout (<stem>.png) fit several images, e.g. {path} fits {len(owners)}: "
            f"{shown}. Save the maps again keyed by relative path (keras-amb predict "
            f"DATASET --save-maps DIR, or keras-amb review), or move each into "
            f"{directory}/<its folder>/"
        )
    return found


def read_map(path):
    """A grey map file as float32 `(H, W)` in `[0, 1]`."""
    from keras_amb.data.image_io import read_image

    return read_image(path)[..., 0].astype(np.float32) / 255.0


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class MapStore:
    """A folder of maps keyed by image, with its index.

    Every file is written through a temporary file and a rename; one
    `MapStore` may be shared by threads.

    Args:
        directory: str, the maps folder (created on the first write).

    Example:
    >>> store = MapStore("maps")  # doctest: +SKIP
    >>> store.write("jay/0001.jpg", grey, source="attention", model="RUN")  # doctest: +SKIP
    >>> store.path("jay/0001.jpg")  # doctest: +SKIP
    'maps/jay/0001.png'
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self._lock = threading.Lock()
        self._index = None

    def path(self, key):
        """Where `key`'s map file is (whether or not it exists)."""
        return os.path.join(self.directory, *map_name(key).split("/"))

    def index(self):
        """`{key: {"map", "map_raw", "source", "time", "model"}}` from `index.json`."""
        with self._lock:
            return dict(self._load())

    def _load(self):
        if self._index is None:
            path = os.path.join(self.directory, INDEX_FILE)
            self._index = {}
            if os.path.isfile(path):
                try:
                    with open(path, encoding="utf-8") as f:
                        data = json.load(f)
                    self._index = dict(data.get("maps", {}))
                except (OSError, ValueError, AttributeError):
                    self._index = {}
        return self._index

    def write(self, key, grey, source, model=None, raw=None, save_index=True, **extra):
        """Saves `key`'s map (uint8 `(H, W)`) and records it in the index.

        Args:
            key: str, the image's key.
            grey: uint8 `(H, W)` array, the map over the whole image.
            source: str, where the map came from ("attention" of a model,
                "edited" in a review, ...).
            model: str, the model (run folder or file) it came from.
            raw: optional float32 array saved beside it as `<key>.npy`.
            save_index: bool, rewrite `index.json` now (else `save_index()`).
            extra: more fields for the index entry.

        Returns:
            The map file's path.
        """
        from PIL import Image

        from keras_amb.files import atomic_write

        grey = np.asarray(grey)
        if grey.dtype != np.uint8 or grey.ndim != 2:
            raise ValueError(
                f"`grey` must be a uint8 (H, W) array. Received: {grey.dtype} {grey.shape}"
            )
        path = self.path(key)
        atomic_write(path, lambda tmp: Image.fromarray(grey).save(tmp, format="PNG"),
                     suffix=".png")
        entry = {"map": map_name(key), "source": source, "time": _now(), "model": model}
        if raw is not None:
            raw_path = os.path.splitext(path)[0] + ".npy"
            atomic_write(raw_path, lambda tmp: np.save(tmp, np.asarray(raw, np.float32)),
                         suffix=".npy")
            entry["map_raw"] = os.path.splitext(map_name(key))[0] + ".npy"
        entry.update(extra)
        with self._lock:
            self._load()[key] = entry
            if save_index:
                self._save_locked()
        return path

    def save_index(self):
        """Rewrites `index.json` from what was recorded."""
        with self._lock:
            self._save_locked()

    def _save_locked(self):
        from keras_amb.files import atomic_write_text

        text = json.dumps({"version": 1, "maps": self._load()}, indent=1, sort_keys=True)
        atomic_write_text(os.path.join(self.directory, INDEX_FILE), text + "\n")
