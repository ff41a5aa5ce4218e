"""A real training epoch fed from memory or through the training pipeline.

One process, resnet_tiny ABN on the synthetic dataset's training split
(2,400 images at 64 px, batch 32: 75 steps), TensorFlow's tf.data feeding
`fit`. Three alternating epochs of each feed, median:
  memory       one random batch repeated (no input work)
  pipeline_2   `keras_amb.data.prepare(..., training=True, cache=True)` as
               `keras-amb train` builds it, 2 map threads (the default here)
  pipeline_1   the same with 1 map thread

    KERAS_BACKEND=tensorflow python benchmarks/epoch_input.py
"""

import os
import statistics
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here


def main():
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_amb
    from keras_amb.data import load_source
    from keras_amb.data import pipeline
    from keras_amb.data.pipeline import without_autotune

    size, batch = 64, 32
    source = load_source("synthetic", progress=False)
    steps = source.sizes["train"] // batch
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, source.num_classes, batch).astype("int32")

    def piped(calls):
        pipeline.parallel_calls = lambda: calls
        return pipeline.prepare(source.examples("train"), size, batch, training=True,
                                cache=True, drop_remainder=True)

    feeds = {
        "memory": without_autotune(tf.data.Dataset.from_tensors((x, y)).repeat(steps).prefetch(2)),
        "pipeline_2": piped(2),
        "pipeline_1": piped(1),
    }
    keras.utils.set_random_seed(0)
    model = keras_amb.AttentionBranchNetwork(num_classes=source.num_classes,
                                             backbone="resnet_tiny", image_size=size)
    model.compile(keras_amb.optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-4))
    for ds in feeds.values():
        model.fit(ds, epochs=1, verbose=0)  # tracing; fills the caches
    times = {name: [] for name in feeds}
    for _ in range(3):
        for name, ds in feeds.items():
            start = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
    print(f"backend {keras.backend.backend()}: {steps} steps per epoch, batch {batch}, {size} px")
    for name, t in times.items():
        median = statistics.median(t)
        print(f"{name}: epoch {median:.2f} s ({steps * batch / median:.0f} img/s), "
              f"epochs {[round(v, 2) for v in t]}")


if __name__ == "__main__":
    main()
