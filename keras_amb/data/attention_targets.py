"""Corrected attention maps as training targets (the human-knowledge
baseline): each example's map file found by its key, read, resized to its
image and joined to the example as `attention_target` and
`has_attention_target`, for any source."""

import os

import numpy as np
import tensorflow as tf

from keras_amb.data import map_store
from keras_amb.data import pipeline
from keras_amb.data.image_io import read_image


def target_lookup(directory, source):
    """A function `split -> [map path or ""]` over the split's keys; the
    folder is matched against every key of the dataset once, on first use."""
    found = {}

    def paths(split):
        if not found:
            found["maps"] = map_store.find_targets(directory, source.all_keys())
        return [found["maps"].get(key, "") for key in source.keys(split)]

    return paths


def load_targets(paths, height, width):
    """Map files as float32 `(N, height, width)` and their `(N,)` presence."""
    from PIL import Image

    targets = np.zeros((len(paths), height, width), np.float32)
    for i, path in enumerate(paths):
        if path:
            grey = (map_store.read_map(path) * 255).astype(np.uint8)
            if grey.shape != (height, width):
                grey = np.asarray(Image.fromarray(grey).resize((width, height), Image.BILINEAR))
            targets[i] = grey.astype(np.float32) / 255.0
    return targets, np.array([bool(p) for p in paths], np.float32)


def decode_target(path):
    """An edited attention map (grey image) as float32 in [0, 1]; empty if missing."""
    path = path.decode("utf-8")
    if not path or not os.path.isfile(path):
        return np.zeros((1, 1), np.float32)
    return read_image(path)[..., 0].astype(np.float32) / 255.0


def with_target_files(examples, paths):
    """Adds `attention_target` (read from `paths[i]` for example i, resized
    to its image) and `has_attention_target` to a dataset of examples."""
    table = tf.constant(list(paths) or [""], dtype=tf.string)

    def add(index, example):
        path = table[index]
        target = tf.numpy_function(decode_target, [path], tf.float32)
        target = tf.image.resize(tf.ensure_shape(target, (None, None))[..., None],
                                 tf.shape(example["image"])[:2])[..., 0]
        example = dict(example)
        example["attention_target"] = target
        example["has_attention_target"] = tf.cast(tf.strings.length(path) > 0, tf.float32)
        return example

    return examples.enumerate().map(add, num_parallel_calls=pipeline.parallel_calls())
