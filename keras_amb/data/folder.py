"""User image folders: class-named subfolders, as `image_dataset_from_directory`.

`root/<class>/<image>`, split deterministically into train/val/test by a hash
of each file's path relative to `root`, or `root/{train,val,test}/<class>/<image>`
when those subfolders exist (a missing `val/` is carved out of `train/` by a
second, salted hash of the same relative paths). The hashes never see how
`root` was written, so `./imgs` and `/abs/imgs` split alike. Broken files
are found before training, never mid-epoch.
"""

import concurrent.futures
import hashlib
import os

from keras_amb.data.image_io import IMAGE_EXTENSIONS
from keras_amb.data.image_io import check_image
from keras_amb.errors import DatasetError

SPLIT_NAMES = ("train", "val", "test")


class BadImagesError(DatasetError):
    """Raised when a folder holds unreadable images; lists them by path."""

    def __init__(self, bad):
        self.bad = bad
        lines = "\n".join(f"  {reason}" for _, reason in bad)
        super().__init__(
            f"{len(bad)} unreadable image file(s):\n{lines}\n"
            "Fix or remove them, or pass --skip-bad-images to leave them out."
        )


def _is_candidate(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _class_dirs(path):
    return sorted(
        entry.name
        for entry in os.scandir(path)
        if entry.is_dir() and not entry.name.startswith(".")
        and not entry.name.lower().endswith(IMAGE_EXTENSIONS)
    )


def hidden_class_dirs(root):
    """The hidden folders (names starting with '.') where class folders are:
    they are not classes, and `keras-amb train` says it skipped them."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        return []
    top = root
    if os.path.isdir(os.path.join(root, "train")) and any(
            os.path.isdir(os.path.join(root, s)) for s in ("val", "test")):
        top = os.path.join(root, "train")
    return sorted(
        entry.name for entry in os.scandir(top)
        if entry.is_dir() and entry.name.startswith(".")
    )


def _files_by_class(path, class_names):
    files = []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(path, name)
        if not os.path.isdir(class_dir):
            continue
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames.sort()
            # A directory named like an image is reported, not walked.
            for d in list(dirnames):
                if _is_candidate(d):
                    files.append((os.path.join(dirpath, d), label))
                    dirnames.remove(d)
            for f in sorted(filenames):
                if _is_candidate(f):
                    files.append((os.path.join(dirpath, f), label))
    return files


def hash_split(path, root, val_fraction, test_fraction, salt=""):
    """`"train"`, `"val"` or `"test"` for `path`, by a hash of `salt` and
    its path relative to `root` (with `/` separators, whatever the OS)."""
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    digest = hashlib.sha1((salt + relative).encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def scan_folder(root, val_fraction=0.1, test_fraction=0.1):
    """Lists a folder's images per split.

    When that leaves the val split empty (`train/` and `test/` but no
    `val/`, or a flat folder too small for the hash to pick any), a
    `val_fraction` of the train split becomes the val split, by a second,
    independent hash of the same relative paths.

    Returns:
        `(class_names, {split: [(path, label), ...]})`.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"Dataset folder not found: {root}")
    if all(os.path.isdir(os.path.join(root, s)) for s in ("train",)) and any(
        os.path.isdir(os.path.join(root, s)) for s in ("val", "test")
    ):
        class_names = _class_dirs(os.path.join(root, "train"))
        splits = {
            s: _files_by_class(os.path.join(root, s), class_names)
            if os.path.isdir(os.path.join(root, s))
            else []
            for s in SPLIT_NAMES
        }
    else:
        class_names = _class_dirs(root)
        splits = {s: [] for s in SPLIT_NAMES}
        for path, label in _files_by_class(root, class_names):
            splits[hash_split(path, root, val_fraction, test_fraction)].append((path, label))
    if not splits["val"]:
        train = splits["train"]
        splits["train"] = []
        for path, label in train:
            split = hash_split(path, root, val_fraction, 0.0, salt="val:")
            splits["val" if split == "val" else "train"].append((path, label))
    if len(class_names) < 2:
        raise DatasetError(
            f"{root}: needs at least two class subfolders (root/<class>/<image>), "
            f"found {len(class_names)}: {class_names}"
        )
    if not splits["train"]:
        raise DatasetError(f"{root}: no images found under the class subfolders")
    return class_names, splits


def find_bad_images(paths, progress=True):
    """Checks every file by decoding it; returns `[(path, reason), ...]`."""
    import sys

    import keras

    # A live bar on a terminal; one line at the end in a log file.
    verbose = 1 if sys.stdout.isatty() else 2
    bar = keras.utils.Progbar(len(paths), unit_name="image", verbose=verbose) if progress else None
    bad = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for i, (path, reason) in enumerate(
            zip(paths, pool.map(check_image, paths, chunksize=16))
        ):
            if reason is not None:
                bad.append((path, reason))
            if bar is not None and (i % 64 == 0 or i == len(paths) - 1):
                bar.update(i + 1)
    return bad
