"""Explanation cost: attention map vs CAM vs Grad-CAM, and evaluation vs forward passes.

    python benchmarks/explain.py [--backbone resnet_small --image-size 96]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet_small")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    import numpy as np

    import keras_amb
    from keras_amb.data import load_source
    from keras_amb.explain import evaluation
    from keras_amb.explain import maps
    from keras_amb.explain import metrics

    model = keras_amb.AttentionMiningNetwork(num_classes=8, backbone=args.backbone,
                                             image_size=args.image_size)
    model.compile(keras_amb.optimizers.SGD(0.01))
    x = np.random.default_rng(0).uniform(0, 255, (args.batch_size, args.image_size, args.image_size, 3)).astype("float32")
    n = args.batch_size
    forward = timed(lambda: model.predict_on_batch(x))
    print(f"{args.backbone} at {args.image_size}px, batch {n}")
    print("| map | ms per image | x one forward pass |")
    print("|---|---|---|")
    for method in maps.METHODS:
        t = timed(lambda: maps.compute(model, x, method))
        print(f"| {method} | {t / n * 1000:.2f} | {t / forward:.2f} |")
    source = load_source("synthetic", synthetic_params={"test_size": 4 * n, "image_size": 64})
    start = time.perf_counter()
    evaluation.evaluate(model, source, "test", batch_size=n, progress=False)
    seconds = time.perf_counter() - start
    # Per batch: the explained forward pass, and one pass of twice the batch
    # (inserted and deleted images together) per threshold and per RISE step.
    double = timed(lambda: model.predict_on_batch(np.concatenate([x, x])))
    steps = metrics.DEFAULT_THRESHOLDS + metrics.DEFAULT_RISE_STEPS + 1
    passes = 1 + 2 * steps
    bare = 4 * (forward + steps * double)
    print(f"\nevaluate on {4 * n} images: {seconds:.1f}s; its {passes} forward passes per batch "
          f"alone take {bare:.1f}s -> overhead {seconds / bare:.2f}x")


if __name__ == "__main__":
    main()
