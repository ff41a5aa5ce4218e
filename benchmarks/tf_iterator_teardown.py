"""The TensorFlow 'slow mode', without keras-amb: tf.data autotuning.

tf.data's autotuning runs a model thread that sleeps for doubling periods
(10 ms, 20 ms, 40 ms, ...) between optimisations; destroying an iterator
waits for that thread's current sleep to end. Keras builds a new iterator
for every `fit` epoch and every `evaluate`, so with autotuning on, an epoch
lasts until the next wake-up after its work is done: about 1.27, 2.55, 5.11,
10.23, 20.47 s ... after the iterator was created. A window of three 4.3 s
training steps (13 s of work) became 20.47 s, 6.84 s per step, "exactly" the
same in every process; that was the slow mode.

Here the "work" is a sleep, so the effect shows on any machine, loaded or
not. keras-amb's pipelines switch autotuning off
(`keras_amb.data.pipeline.without_autotune`).

    python benchmarks/tf_iterator_teardown.py
"""

import gc
import time


def epoch(dataset, work):
    """Seconds from creating an iterator to having destroyed it, around
    `work` seconds of 'training'."""
    start = time.perf_counter()
    iterator = iter(dataset)
    next(iterator)
    time.sleep(work)
    del iterator
    gc.collect()
    return time.perf_counter() - start


def main():
    import tensorflow as tf

    base = tf.data.Dataset.range(1000).map(
        lambda i: i * 2, num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)
    print("| autotune | work s | epoch s, 3 epochs (iterator created to destroyed) |")
    print("|---|---|---|")
    for autotune in (True, False):
        options = tf.data.Options()
        options.autotune.enabled = autotune
        dataset = base.with_options(options)
        for work in (1.0, 3.0, 6.0, 12.0):
            times = [epoch(dataset, work) for _ in range(3)]
            print(f"| {'on' if autotune else 'off'} | {work:.1f} | "
                  f"{', '.join(f'{t:.2f}' for t in times)} |", flush=True)


if __name__ == "__main__":
    main()
