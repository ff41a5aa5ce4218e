"""tf.data pipelines: decode, augment (ABN's), resize, batch, prefetch.

Images stay RGB in `[0, 255]` (float32); the model normalises them itself.
Ground-truth masks travel with the images and go through the same geometric
transforms, so evaluation can score attention against them.

tf.data's autotuning is switched off (`without_autotune`): its model thread
sleeps for doubling periods (10 ms, 20 ms, ... up to a minute) and destroying
an iterator waits for the current sleep to end, so every epoch (and every
`evaluate`) of a training run ended on the next of those wake-ups, 1.27,
2.55, 5.11, 10.23, 20.47 s ... after it began: up to twice its real length.
`benchmarks/results/cpu_2core_tf_iterator_teardown.md` shows it without
keras-amb. Parallelism
is set explicitly instead.
"""

import os

import tensorflow as tf

MASK_KEYS = ("object_mask", "part_mask", "part1_mask", "part2_mask", "attention_target")
PREFETCH_BATCHES = 2


def without_autotune(dataset):
    """`dataset` with tf.data autotuning off (see the module docstring)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def parallel_calls():
    """Threads of the pipeline's `map`s: one per core."""
    return os.cpu_count() or 2


def _stack(example):
    """Image and masks as one float tensor, so crops move them together."""
    image = tf.cast(example["image"], tf.float32)
    keys = [k for k in MASK_KEYS if k in example]
    channels = [image] + [tf.cast(example[k], tf.float32)[..., None] for k in keys]
    return tf.concat(channels, axis=-1), keys


def _unstack(stacked, keys, example):
    out = {"images": stacked[..., :3], "labels": tf.cast(example["label"], tf.int32)}
    if "has_attention_target" in example:
        out["has_attention_target"] = tf.cast(example["has_attention_target"], tf.float32)
    for i, key in enumerate(keys):
        out[key] = stacked[..., 3 + i]
    return out


def random_resized_crop(stacked, size, scale, seed, flip=True):
    """Inception-style crop (area fraction in `scale`, aspect 3/4-4/3), resize,
    and (with `flip`) a random horizontal flip."""
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(stacked),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        area_range=scale,
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        min_object_covered=0.0,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(stacked, begin, extent)
    crop = tf.image.resize(crop, (size, size), method="bilinear")
    if not flip:
        return crop
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    flip = tf.random.stateless_uniform((), flip_seed) < 0.5
    return tf.cond(flip, lambda: tf.image.flip_left_right(crop), lambda: crop)


def center_crop(stacked, size, resize_ratio):
    """Resize the shorter side to `size * resize_ratio`, crop the center."""
    shape = tf.cast(tf.shape(stacked)[:2], tf.float32)
    target = tf.cast(size, tf.float32) * resize_ratio
    scale = target / tf.reduce_min(shape)
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    resized = tf.image.resize(stacked, new_shape, method="bilinear")
    return tf.image.resize_with_crop_or_pad(resized, size, size)


def prepare(
    examples,
    image_size,
    batch_size,
    training,
    crop_scale=(0.35, 1.0),
    resize_ratio=256 / 224,
    seed=0,
    shuffle_buffer=2048,
    cache=False,
    keep_masks=False,
    drop_remainder=False,
    flip=True,
):
    """Turns a dataset of examples into batches for `fit`/`evaluate`.

    Args:
        examples: `tf.data.Dataset` of dicts with `image` (uint8, HxWx3),
            `label`, and optionally `object_mask`, `part_mask`,
            `attention_target` (HxW).
        image_size: int, output side in pixels.
        batch_size: int.
        training: bool, shuffle and augment (random-resized crop + flip), or
            resize and center-crop.
        crop_scale: (min, max) area fraction of the training crop.
        flip: bool, random horizontal flips in training (off for data that
            is not mirror-symmetric: digits, text, products).
        resize_ratio: test-time resize of the shorter side, relative to
            `image_size` (ABN: 256/224).
        seed: int, seed of the shuffle and of the augmentation.
        cache: bool, cache decoded examples in memory.
        keep_masks: bool, yield dicts with the masks (for evaluation) instead
            of `(images, labels)`.
        drop_remainder: bool, drop an incomplete last batch.

    Returns:
        A batched, prefetched `tf.data.Dataset`: `(images, labels)`, or
        `({"images", "attention_target", "has_attention_target"}, labels)`
        when examples carry an `attention_target`, or dicts when `keep_masks`.
    """
    if cache:
        examples = examples.cache()
    if training:
        examples = examples.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    base_seed = tf.constant([seed, 0], dtype=tf.int64)

    def transform(index, example):
        stacked, keys = _stack(example)
        if training:
            element_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
            stacked = random_resized_crop(
                stacked, image_size, crop_scale, element_seed, flip=flip
            )
        else:
            stacked = center_crop(stacked, image_size, resize_ratio)
        stacked = tf.ensure_shape(stacked, (image_size, image_size, None))
        return _unstack(stacked, keys, example)

    def to_model_inputs(out):
        if keep_masks:
            return out
        if "attention_target" in out:
            inputs = {"images": out["images"], "attention_target": out["attention_target"]}
            if "has_attention_target" in out:
                inputs["has_attention_target"] = out["has_attention_target"]
            return inputs, out["labels"]
        return out["images"], out["labels"]

    ds = examples.enumerate().map(transform, num_parallel_calls=parallel_calls())
    ds = ds.map(to_model_inputs)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(PREFETCH_BATCHES)
    return without_autotune(ds)
