"""Input pipeline speed: images/s of the training pipeline on a JPEG folder.

Generates a folder of JPEGs (default 512 at 320x280, so the random-resized
crop to 224 px does real work), then times decode + augment + batch +
prefetch, next to the train step's images/s (from benchmarks/train_step.py,
measured in this run for ABN on the same backbone), to show whether input
would starve training.

    python benchmarks/input_pipeline.py [--images 512] [--image-size 224]
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def make_folder(root, count, seed=0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        cls = f"class_{i % 10}"
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        image = rng.integers(0, 256, (280, 320, 3), dtype=np.uint8)
        Image.fromarray(image).save(os.path.join(root, cls, f"{i}.jpg"), quality=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-step", action="store_true",
                        help="also measure the ABN train step (slow on a CPU)")
    args = parser.parse_args()
    from keras_amb.data import load_source
    from keras_amb.data import prepare

    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        make_folder(root, args.images)
        print(f"wrote {args.images} JPEGs in {time.perf_counter() - start:.1f}s")
        start = time.perf_counter()
        source = load_source(root, progress=False)
        check = time.perf_counter() - start
        print(f"up-front check of every file: {args.images / check:.0f} images/s")
        ds = prepare(source.examples("train"), args.image_size, args.batch_size, training=True)
        for _ in ds.take(2):
            pass
        start, n = time.perf_counter(), 0
        for x, _ in ds:
            n += int(x.shape[0])
        seconds = time.perf_counter() - start
        pipeline_rate = n / seconds
        print(f"training pipeline (decode, random-resized crop, flip, batch {args.batch_size}): "
              f"{pipeline_rate:.0f} images/s")
    if args.train_step:
        from _common import run_isolated

        step = run_isolated(os.path.join(os.path.dirname(__file__), "train_step.py"),
                            ["--variant", "abn", "--image-size", str(args.image_size),
                             "--batch-size", str(args.batch_size), "--steps", "2", "--warmup", "1",
                             "--backbone", "resnet50", "--num-classes", "200", "--jit-compile", "auto"])
        rate = step["images_per_s"]
        print(f"ABN ResNet-50 train step: {rate:.1f} images/s -> the pipeline is "
              f"{pipeline_rate / rate:.0f}x faster than training needs "
              f"({'no' if pipeline_rate > rate else 'INPUT-BOUND:'} starvation)")


if __name__ == "__main__":
    main()
