"""Dataset sources: the built-in synthetic set, TFDS datasets, image folders.

(The TFDS datasets' own code is in `data/tfds_datasets.py`.)

Each source gives, per split, a `tf.data.Dataset` of example dicts with
`image` (uint8, HxWx3), `label` (int32), and where the dataset has them
`object_mask` (HxW, 1 on the object: synthetic objects, CUB segmentation
masks, Stanford Dogs boxes), `part_mask` (the synthetic discriminative
parts) and, for synthetic version 2, `part1_mask` and `part2_mask`.

`DataSource` (`data.data_source`) is what each gives; the attention
targets joined to any of them are `data.attention_targets`.
"""

import os

import numpy as np
import tensorflow as tf

from keras_amb.data import attention_targets
from keras_amb.data import folder
from keras_amb.data import pipeline
from keras_amb.data import synthetic
from keras_amb.data.image_io import ImageReadError
from keras_amb.data.image_io import read_image
from keras_amb.data.tfds_datasets import TFDS_DATASETS
from keras_amb.data.tfds_datasets import tfds_source
from keras_amb.data.data_source import DataSource  # noqa: F401 (re-exported)
from keras_amb.errors import DatasetError


# === Synthetic ===


def synthetic_source(attention_targets_dir=None, **params):
    """The built-in synthetic fine-grained dataset (see `data.synthetic`).

    `params` are a config's `synthetic:` mapping (`version` picks the
    generator). Version 2 and 3 sources can also give each split with one
    part painted over (`DataSource.occluded`). With `attention_targets_dir`,
    each example whose map `<dir>/<split>/<id>.png` exists carries it as
    `attention_target` (see `data.map_store`).
    """
    config = synthetic.make_config(params)
    cache = {}

    def arrays(split, occlude=None):
        # An occluded copy has no distractors: on v3 a distractor is another
        # class's wing, so with the true wing hidden it would name that
        # class (top-1 below chance), and the copy would measure the
        # distractor instead of what the other part carries.
        if (split, occlude) not in cache:
            cache[split, occlude] = synthetic.make_split(
                config, split, occlude=occlude, distractors=occlude is None)
        return cache[split, occlude]

    def make(split, occlude=None):
        data = {k: v for k, v in arrays(split, occlude).items() if k != "box"}
        if attention_targets_dir and occlude is None:
            size = config.image_size
            data["attention_target"], data["has_attention_target"] = (
                attention_targets.load_targets(targets(split), size, size))
        return tf.data.Dataset.from_tensor_slices(data)

    two_parts = config.version in ("2", "3")
    source = DataSource(
        name="synthetic" if not two_parts else f"synthetic_v{config.version}",
        class_names=synthetic.names_for(config),
        annotations=("object_mask", "part_mask")
        + (("part1_mask", "part2_mask") if two_parts else ()),
        sizes={s: config.split_size(s) for s in ("train", "val", "test")},
        make=make,
        resize_ratio=1.0,
        make_occluded=(lambda split, part: make(split, part)) if two_parts else None,
    )
    if attention_targets_dir:
        targets = attention_targets.target_lookup(attention_targets_dir, source)
    return source


# === Image folders ===


def _decode_file(path):
    try:
        return read_image(path.decode("utf-8"))
    except ImageReadError:
        # Files were checked before training; one that broke since is
        # replaced by a black pixel rather than killing the run.
        return np.zeros((1, 1, 3), np.uint8)


def folder_source(root, skip_bad_images=False, check_images=True, progress=True,
                  attention_targets_dir=None):
    """Class-named subfolders; broken files found up front.

    With `attention_targets_dir`, each image whose corrected map exists
    there, keyed by its path relative to `root` (`<dir>/<class>/<stem>.png`,
    or an unambiguous flat `<dir>/<stem>.png`; see `data.map_store`),
    carries it as `attention_target`, with `has_attention_target` 1; images
    without one get 0 (no map loss).

    Raises:
        folder.BadImagesError: listing unreadable files, unless
            `skip_bad_images`, in which case they are left out and listed in
            `DataSource.skipped`.
    """
    class_names, splits = folder.scan_folder(root)
    skipped = []
    if check_images:
        paths = [p for items in splits.values() for p, _ in items]
        skipped = folder.find_bad_images(paths, progress=progress)
        if skipped and not skip_bad_images:
            raise folder.BadImagesError(skipped)
        bad = {p for p, _ in skipped}
        splits = {s: [it for it in items if it[0] not in bad] for s, items in splits.items()}

    def make(split):
        items = splits[split]
        paths = [p for p, _ in items]
        labels = np.array([label for _, label in items], dtype=np.int32)
        columns = {"path": tf.constant(paths, dtype=tf.string), "label": labels}
        if attention_targets_dir:
            targets = target_paths(split)
            columns["attention_target_path"] = tf.constant(targets, dtype=tf.string)
            columns["has_attention_target"] = np.array([bool(t) for t in targets], np.float32)
        ds = tf.data.Dataset.from_tensor_slices(columns)

        def load(example):
            image = tf.numpy_function(_decode_file, [example["path"]], tf.uint8)
            image = tf.ensure_shape(image, (None, None, 3))
            out = {"image": image, "label": example["label"]}
            if attention_targets_dir:
                target = tf.numpy_function(attention_targets.decode_target, [example["attention_target_path"]], tf.float32)
                target = tf.image.resize(tf.ensure_shape(target, (None, None))[..., None],
                                         tf.shape(image)[:2])[..., 0]
                out["attention_target"] = target
                out["has_attention_target"] = example["has_attention_target"]
            return out

        return ds.map(load, num_parallel_calls=pipeline.parallel_calls())

    source = DataSource(
        name=os.fspath(root),
        class_names=class_names,
        annotations=(),
        sizes={s: len(items) for s, items in splits.items()},
        make=make,
        skipped=skipped,
        files=splits,
    )
    if attention_targets_dir:
        target_paths = attention_targets.target_lookup(attention_targets_dir, source)
        target_paths("train")  # a clash is reported before training
    return source


def load_source(dataset, data_dir=None, skip_bad_images=False, synthetic_params=None,
                progress=True, attention_targets_dir=None):
    """A `DataSource` for `--dataset`: a TFDS name, `synthetic`, or a folder.

    `attention_targets_dir`: corrected attention maps keyed by image
    (`data.map_store`), for the human-knowledge baseline.
    """
    if dataset == "synthetic":
        return synthetic_source(attention_targets_dir=attention_targets_dir,
                                **(synthetic_params or {}))
    if dataset in TFDS_DATASETS:
        return tfds_source(dataset, data_dir=data_dir,
                           attention_targets_dir=attention_targets_dir)
    if os.path.isdir(dataset):
        return folder_source(dataset, skip_bad_images=skip_bad_images, progress=progress,
                             attention_targets_dir=attention_targets_dir)
    raise DatasetError(
        f"Unknown dataset {dataset!r}: not 'synthetic', "
        f"{', '.join(repr(n) for n in TFDS_DATASETS)}, nor an existing folder."
    )


def source_for_data(data, progress=True):
    """The `DataSource` of a config's data section.

    Args:
        data: `keras_amb.app.run_config.DataConfig` (its `dataset`, `data_dir`,
            `skip_bad_images`, `synthetic` and `attention_targets` are read).
        progress: bool, show progress while a folder is checked.
    """
    from keras_amb.errors import ConfigError

    targets = data.attention_targets
    if targets not in (None, "masks") and not os.path.isdir(str(targets)):
        raise ConfigError(
            f"attention_targets must be 'masks' or a folder of corrected maps; "
            f"{targets!r} is neither"
        )
    if data.dataset == "synthetic":
        try:
            synthetic.make_config(data.synthetic)
        except ValueError as error:
            raise ConfigError(f"synthetic: {error}") from None
    return load_source(
        data.dataset,
        data_dir=data.data_dir,
        skip_bad_images=data.skip_bad_images,
        synthetic_params=data.synthetic,
        progress=progress,
        attention_targets_dir=targets if targets not in (None, "masks") else None,
    )


def with_attention_targets(source, split, attention_targets=None):
    """The split's examples, each carrying its `attention_target` when
    `attention_targets` is `"masks"` (training against the dataset's own
    masks): the discriminative parts where the dataset has them, else the
    object. A folder of corrected maps is already in `source`
    (`load_source(attention_targets_dir=...)`), and None adds nothing."""
    examples = source.examples(split)
    if attention_targets != "masks":
        return examples
    if "object_mask" not in source.annotations:
        from keras_amb.errors import ConfigError

        raise ConfigError(
            f"--attention-targets masks: dataset {source.name!r} has no masks"
        )
    key = "part_mask" if "part_mask" in source.annotations else "object_mask"

    def add(example):
        example = dict(example)
        example["attention_target"] = example[key]
        return example

    return examples.map(add)
