"""Serving speed: the exported SavedModel vs the Keras model's predict (CPU).

Trains nothing: exports a freshly initialised model of the chosen backbone,
then measures latency at batch 1 and throughput at batch 32 for
`predict_images` (uint8) and `serving_default` (JPEG bytes), next to
`model.predict` and `model.predict_on_batch`.

    KERAS_BACKEND=tensorflow python benchmarks/serving.py [--backbone resnet50 --image-size 224]
"""

import argparse
import io
import os
import sys
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet_small")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    import keras_amb
    from keras_amb.app.export import export_saved_model

    model = keras_amb.AttentionMiningNetwork(num_classes=200, backbone=args.backbone,
                                             image_size=args.image_size)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, args.image_size, args.image_size, 3), dtype=np.uint8)
    encoded = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=90)
        encoded.append(buf.getvalue())
    with tempfile.TemporaryDirectory() as root:
        path = export_saved_model(model, [f"c{i}" for i in range(200)], root)
        loaded = tf.saved_model.load(path)
        uint8 = loaded.signatures["predict_images"]
        jpeg = loaded.signatures["serving_default"]
        rows = []
        for batch in (1, 32):
            x8 = tf.constant(images[:batch])
            xb = tf.constant(encoded[:batch])
            xf = images[:batch].astype(np.float32)
            rows.append((batch, {
                "SavedModel predict_images (uint8)": timed(lambda: uint8(images=x8), args.repeats),
                "SavedModel serving_default (JPEG bytes)": timed(lambda: jpeg(image_bytes=xb), args.repeats),
                "Keras model.predict": timed(lambda: model.predict(xf, verbose=0), args.repeats),
                "Keras model.predict_on_batch": timed(lambda: model.predict_on_batch(xf), args.repeats),
            }))
    print(f"{args.backbone} at {args.image_size}px, 200 classes, CPU")
    print("| path | batch 1 latency ms | batch 32 images/s |")
    print("|---|---|---|")
    for name in rows[0][1]:
        print(f"| {name} | {rows[0][1][name] * 1000:.1f} | {32 / rows[1][1][name]:.0f} |")


if __name__ == "__main__":
    main()
