"""PC, set up as its authors do, keeps the features and the accuracy.

With the centers drawn near the origin, the proximity term pulled every
feature towards zero (perception-feature norm 3.5 -> 0.36 in three epochs on
synthetic v2, top-1 18% against 46% for AMB alone). With the centers at the
class means, their speed independent of `pc_weight` and no decay on them,
AMB + PC must stay close to AMB alone and keep its features.
"""

import keras
import numpy as np
import pytest

from keras_amb.app import config as amb_config
from keras_amb.app import runs
from keras_amb.app import trainer
from keras_amb.data import pipeline
from keras_amb.data import sources

BASE = {
    "dataset": "synthetic",
    "synthetic": {"num_classes": 6, "image_size": 32, "train_size": 480, "val_size": 96,
                  "test_size": 0},
    "backbone": "resnet_tiny", "image_size": 32, "batch_size": 16, "architecture": "abn",
    "epochs": 4, "attention_images": 0, "cache": True, "crop_scale": [0.7, 1.0],
    "resize_ratio": 1.0, "optimizer": {"learning_rate": 0.05},
    "lr_schedule": {"name": "constant"},
}


def _train(root, name, **overrides):
    config = amb_config.resolve(None, dict(BASE, **overrides))
    return trainer.train(config, run_dir=str(root / name), verbose=0,
                         log=lambda line: None).run_dir


def _val_top1_and_norm(run_dir):
    model = runs.Run.open(run_dir).load_model()
    config = amb_config.resolve(None, BASE)
    source = sources.source_for_data(config.data, progress=False)
    batches = pipeline.prepare(source.examples("val"), 32, 32, training=False,
                               resize_ratio=1.0)
    hits, norms = [], []
    for images, labels in batches:
        out = model.forward_step(images, "main", training=False)
        probs = keras.ops.convert_to_numpy(out["probabilities"])
        hits.append(np.argmax(probs, -1) == np.asarray(labels))
        features = keras.ops.convert_to_numpy(out["perception_features"])
        norms.append(np.linalg.norm(features, axis=1))
    return float(np.concatenate(hits).mean()), float(np.concatenate(norms).mean())


# Once, under torch (the shortest suite): what it measures is PC's set-up
# (the centers' start, speed and decay), written once in keras.ops for every
# backend; each backend's train step, which applies it, is checked per
# backend in test_model.py and test_evidence.py (the centers start at the
# class means, move at the multiplier's speed whatever pc_weight is, get no
# decay; every weight feeding each update changes). Under each backend it
# cost 72-80 s of the suite's time.
@pytest.mark.backend_independent("torch")
@pytest.mark.slow
def test_pc_keeps_accuracy_and_feature_norm(tmp_path):
    abn = _train(tmp_path, "abn")
    common = dict(architecture="mining", init_from=abn, epochs=3, amb=True, cot=False)
    amb = _train(tmp_path, "amb", pc=False, **common)
    pc = _train(tmp_path, "pc", pc=True, pc_weight=1.0, **common)  # the paper's weight
    amb_top1, amb_norm = _val_top1_and_norm(amb)
    pc_top1, pc_norm = _val_top1_and_norm(pc)
    # The task is learnt at all: chance is 1/6. (This small run is not far
    # above it: AMB alone gave 0.50 on JAX on an AVX-512 CPU, 0.6 elsewhere.)
    assert amb_top1 > 0.4, amb_top1
    # No collapse: the old set-up cost 28 points (18% against 46%). On 96
    # validation images one run's difference has a standard error of about
    # 7 points, so "within a few points" is checked at two of them; measured
    # differences: +6 (JAX, AVX-512), -9 (the same with 6 ABN epochs).
    assert pc_top1 >= amb_top1 - 0.15, (pc_top1, amb_top1)
    # Measured: the earlier set-up kept 0.22 of AMB's norm (0.74 against
    # 3.32, TensorFlow); this one keeps 0.39 on torch and more than 0.5 on
    # TensorFlow and JAX (at the default pc_weight, 0.1, both set-ups keep it).
    assert pc_norm >= 0.3 * amb_norm, (pc_norm, amb_norm)
