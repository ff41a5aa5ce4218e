import csv
import os

import keras
import numpy as np
import pytest

from keras_amb import AttentionMiningNetwork
from tests.conftest import BACKEND
from tests.conftest import RESUMABLE_CONFIG
from tests.conftest import keras_amb_cli
from tests.conftest import start_keras_amb


def _history_rows(run):
    with open(os.path.join(run, "history.csv")) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="op determinism is a TensorFlow switch")
def test_seeded_deterministic_runs_are_identical(tiny_config, tmp_path):
    rows = []
    for name in ("a", "b"):
        result = keras_amb_cli(["train", "--config", tiny_config, "--seed", "7", "--deterministic",
                                "--output", str(tmp_path / name)])
        assert result.returncode == 0, result.stderr[-3000:]
        rows.append(_history_rows(tmp_path / name))
    assert rows[0] == rows[1]
    assert len(rows[0]) == 2


def test_unwritable_output_fails_before_training(tiny_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = keras_amb_cli(["train", "--config", tiny_config, "--output", str(blocker / "run")])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Cannot create output folder" in result.stderr and str(blocker) in result.stderr


def test_model_file_from_elsewhere_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    (tmp_path / "junk.keras").write_bytes(b"PK\x03\x04 not really a zip")
    for name in ("lambda.keras", "junk.keras"):
        result = keras_amb_cli(["evaluate", "--model", str(tmp_path / name), "--dataset", "synthetic"])
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "not a loadable keras-amb model" in result.stderr and name in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_without_nan(policy):
    if BACKEND == "torch" and policy == "mixed_float16":
        pytest.skip("PyTorch has no float16 convolution backward on the CPU")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = (np.arange(16) % 4).astype("int32")
    losses = {}
    for name in ("float32", policy):
        keras.mixed_precision.set_global_policy(name)
        try:
            keras.utils.set_random_seed(0)
            model = AttentionMiningNetwork(num_classes=4, backbone="resnet_tiny", image_size=32)
            model.compile(keras.optimizers.SGD(0.01, momentum=0.9))
            history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
        finally:
            keras.mixed_precision.set_global_policy("float32")
        losses[name] = history
        assert all(np.isfinite(v).all() for v in history.values()), (name, history)
        out = model.predict(x[:2], verbose=0)
        assert out["probabilities"].dtype == np.float32
        assert out["attention"].dtype == np.float32
    # Same model, same data: the mixed-precision loss tracks the float32 one.
    assert losses[policy]["loss"][-1] == pytest.approx(losses["float32"]["loss"][-1], rel=0.25)
    if policy == "mixed_float16":
        assert isinstance(model.main_optimizer, keras.optimizers.LossScaleOptimizer)


def _all_checkpoints_load(run):
    import json

    import keras_amb  # noqa: F401  (registers the classes)

    json.load(open(os.path.join(run, "state.json")))
    paths = [os.path.join(run, "checkpoints", f) for f in os.listdir(os.path.join(run, "checkpoints"))
             if f.endswith(".keras") and not f.startswith(".")] if os.path.isdir(
                 os.path.join(run, "checkpoints")) else []
    paths += [os.path.join(run, f) for f in ("abn.keras", "model.keras") if os.path.isfile(os.path.join(run, f))]
    for path in paths:
        keras.saving.load_model(path, safe_mode=True)
    return len(paths)


def test_killed_at_random_moments_nothing_is_lost(tmp_path):
    import random
    import signal
    import time

    config = tmp_path / "c.yaml"
    config.write_text(RESUMABLE_CONFIG)
    run = str(tmp_path / "run")
    rng = random.Random(1)
    kills = 0
    for attempt in range(3):
        args = ["train", "--resume", run] if os.path.isdir(run) else [
            "train", "--config", str(config), "--output", run]
        proc = start_keras_amb(args)
        start = time.time()
        pause = rng.uniform(0.0, 4.0)
        while proc.poll() is None and time.time() - start < 240:
            checkpoints = os.path.join(run, "checkpoints")
            writing = os.path.isdir(checkpoints) and any(
                f.startswith(".tmp-") for f in os.listdir(checkpoints))
            # The first kill lands while a checkpoint is being written.
            if (attempt == 0 and writing) or (attempt > 0 and os.path.isdir(checkpoints)
                                              and time.time() - start > 8 + pause):
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.01)
        proc.wait(timeout=120)
        assert _all_checkpoints_load(run) >= 0
    assert kills >= 2, "the runs ended before they could be killed"
    result = keras_amb_cli(["train", "--resume", run])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(run, "history.csv")) as f:
        epochs = [(r["stage"], int(r["epoch"])) for r in csv.DictReader(f)]
    assert epochs == [("abn", 1), ("abn", 2), ("proposed", 1), ("proposed", 2), ("proposed", 3)]
    assert _all_checkpoints_load(run) >= 5


def test_nearly_full_disk_is_refused_before_training(tmp_path, monkeypatch):
    import collections
    import shutil

    from keras_amb import runs

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(runs.RunError, match="Only 1 MiB free"):
        runs.check_writable(str(tmp_path / "run"))


def test_evaluate_on_a_folder_with_awkward_files(tmp_path):
    from PIL import Image

    from tests.images import write_bad_images
    from tests.images import write_good_images
    from tests.images import write_huge_image

    root = tmp_path / "images"
    for k, cls in enumerate(("left", "right")):
        for i in range(10):
            image = np.full((24, 24, 3), 60, np.uint8)
            image[:, 12 * k : 12 * (k + 1)] = 220
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / cls / f"{cls}{i}.png")
    args = ["--backbone", "resnet_tiny", "--image-size", "32", "--weights", "none",
            "--batch-size", "8", "--model", "abn", "--epochs", "1"]
    result = keras_amb_cli(["train", "--dataset", str(root), "--output", str(tmp_path / "run")] + args)
    assert result.returncode == 0, result.stderr[-3000:]
    write_good_images(str(root / "left" / "odd"))
    write_huge_image(root / "left" / "huge.jpg", (220, 60, 60))
    bad = write_bad_images(str(root / "right"))
    result = keras_amb_cli(["evaluate", "--model", str(tmp_path / "run"), "--dataset", str(root),
                            "--split", "train", "--json"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for path in bad.values():
        assert f"skipped: {path}" in result.stderr
    import json

    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0.0 <= data["top1"] <= 1.0 and data["pointing_game"] is None


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    import json

    # Epoch 1 trains at a sane rate; the schedule then multiplies it by 1e38,
    # so epoch 2 diverges.
    config = tmp_path / "c.yaml"
    config.write_text(RESUMABLE_CONFIG.replace("pretrain_epochs: 2\nepochs: 3\n", "epochs: 2\n")
                      + "model: abn\nlr_schedule: {name: step, milestones: [0.5], gamma: 1.0e+38}\n")
    run = tmp_path / "run"
    result = keras_amb_cli(["train", "--config", str(config), "--output", str(run)])
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    message = [line for line in result.stderr.splitlines() if "became" in line]
    assert len(message) == 1, result.stderr[-3000:]
    assert "loss became" in message[0] and "stage 'abn', epoch 2" in message[0]
    last = run / "checkpoints" / "abn-last.keras"
    assert f"The last good checkpoint is {last}" in message[0]
    assert json.load(open(run / "state.json"))["completed_epochs"] == 1
    assert [r["epoch"] for r in _history_rows(run)] == ["1"]
    import keras_amb  # noqa: F401  (registers the classes)

    model = keras.saving.load_model(last, safe_mode=True)
    weights = np.concatenate([np.ravel(w) for w in model.get_weights()])
    assert np.isfinite(weights).all()
    assert not (run / "model.keras").exists()
