"""Stanford Dogs and CUB-200-2010 through TensorFlow Datasets.

Each example becomes the sources' common dict (`image`, `label`,
`object_mask`: Stanford Dogs' boxes filled in, CUB's segmentation masks).
Offline, an unprepared dataset fails within seconds with the fix
(`DatasetUnavailableError`), never inside a download.
"""

import socket

import tensorflow as tf

from keras_amb.data import attention_targets
from keras_amb.data import pipeline
from keras_amb.data.data_source import DataSource
from keras_amb.errors import DatasetUnavailableError

TFDS_DATASETS = {
    "stanford_dogs": {
        "host": "vision.stanford.edu",
        "splits": {"train": "train[:90%]", "val": "train[90%:]", "test": "test"},
    },
    "caltech_birds2010": {
        "host": "data.caltech.edu",
        "splits": {"train": "train[:90%]", "val": "train[90%:]", "test": "test"},
    },
}


def _reachable(host, timeout=3.0):
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _boxes_to_mask(boxes, height, width):
    """Union of normalised boxes as an HxW uint8 mask; copes with min > max."""
    boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    ymin = tf.minimum(boxes[:, 0], boxes[:, 2])
    ymax = tf.maximum(boxes[:, 0], boxes[:, 2])
    xmin = tf.minimum(boxes[:, 1], boxes[:, 3])
    xmax = tf.maximum(boxes[:, 1], boxes[:, 3])
    ys = (tf.cast(tf.range(height), tf.float32) + 0.5) / tf.cast(height, tf.float32)
    xs = (tf.cast(tf.range(width), tf.float32) + 0.5) / tf.cast(width, tf.float32)
    inside_y = (ys[None, :] >= ymin[:, None]) & (ys[None, :] <= ymax[:, None])
    inside_x = (xs[None, :] >= xmin[:, None]) & (xs[None, :] <= xmax[:, None])
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    return tf.cast(tf.reduce_any(inside, axis=0), tf.uint8)


def _normalise_tfds_example(name):
    def fn(example):
        image = example["image"]
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        out = {"image": image, "label": tf.cast(example["label"], tf.int32)}
        if name == "stanford_dogs":
            out["object_mask"] = _boxes_to_mask(example["objects"]["bbox"], height, width)
        else:
            mask = tf.image.resize(
                example["segmentation_mask"], (height, width), method="nearest"
            )
            out["object_mask"] = tf.cast(mask[..., 0] > 0, tf.uint8)
        return out

    return fn


def tfds_source(name, data_dir=None, download=True, attention_targets_dir=None):
    """Stanford Dogs or CUB-200-2010 through TensorFlow Datasets.

    With `attention_targets_dir`, examples carry their corrected maps,
    keyed by split and position (`<dir>/<split>/<id>.png`, `data.map_store`).

    Raises:
        DatasetUnavailableError: within seconds, when the data is not prepared
            in `data_dir` and cannot be downloaded, with what to do.
    """
    import tensorflow_datasets as tfds

    if name not in TFDS_DATASETS:
        raise ValueError(
            f"Unknown TFDS dataset {name!r}. Choose one of: {', '.join(TFDS_DATASETS)}"
        )
    spec = TFDS_DATASETS[name]
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        where = data_dir or "~/tensorflow_datasets"
        fix = (
            f"On a machine with internet run `tfds build {name} --data_dir DIR` "
            f"(or `keras-amb train --dataset {name} --data-dir DIR` there), copy "
            f"DIR here and pass --data-dir DIR."
        )
        if not download:
            raise DatasetUnavailableError(f"{name} is not prepared in {where}. {fix}")
        if not _reachable(spec["host"]):
            raise DatasetUnavailableError(
                f"{name} is not prepared in {where} and {spec['host']} cannot be "
                f"reached to download it. {fix}"
            )
        builder.download_and_prepare()
    info = builder.info
    class_names = list(info.features["label"].names)

    def make(split):
        ds = builder.as_dataset(split=spec["splits"][split], shuffle_files=False)
        ds = ds.map(_normalise_tfds_example(name), num_parallel_calls=pipeline.parallel_calls())
        if attention_targets_dir:
            ds = attention_targets.with_target_files(ds, targets(split))
        return ds

    sizes = {}
    for split, tfds_split in spec["splits"].items():
        try:
            sizes[split] = info.splits[tfds_split].num_examples
        except Exception:  # mock data and partial metadata
            sizes[split] = None
    source = DataSource(
        name=name,
        class_names=class_names,
        annotations=("object_mask",),
        sizes=sizes,
        make=make,
    )
    if attention_targets_dir:
        targets = attention_targets.target_lookup(attention_targets_dir, source)
    return source
