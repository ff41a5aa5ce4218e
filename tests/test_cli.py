import csv
import json
import os
import random
import signal
import time

import keras

from tests.conftest import RESUMABLE_CONFIG
from tests.conftest import keras_amb_cli
from tests.conftest import start_keras_amb
from tests.images import write_bad_images
from tests.images import write_good_images
from tests.images import write_huge_image


def _history(run):
    with open(os.path.join(run, "history.csv")) as f:
        return [(r["stage"], int(r["epoch"])) for r in csv.DictReader(f)]


def test_help_teaches():
    result = keras_amb_cli(["train", "--help"])
    assert result.returncode == 0
    for needle in ("--dataset", "--resume", "--no-cot", "[data]", "[model]", "Examples:"):
        assert needle in result.stdout


def test_train_end_to_end_writes_a_complete_run(tiny_config, tmp_path):
    run = str(tmp_path / "run")
    result = keras_amb_cli(["train", "--config", tiny_config, "--output", run, "--seed", "3"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Test: top-1" in result.stdout and run in result.stdout
    for name in ("config.yaml", "labels.txt", "history.csv", "model.keras", "abn.keras",
                 "state.json", "test_metrics.json",
                 "checkpoints/proposed-best.keras", "checkpoints/proposed-last.keras"):
        assert os.path.isfile(os.path.join(run, name)), name
    import yaml

    config = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    assert config["seed"] == 3 and config["epochs"] == 1 and config["backbone"] == "resnet_tiny"
    assert len(open(os.path.join(run, "labels.txt")).read().split()) == 4
    assert _history(run) == [("abn", 1), ("proposed", 1)]
    events = [f for d, _, fs in os.walk(os.path.join(run, "logs")) for f in fs]
    assert any("attention" in d for d, _, fs in os.walk(os.path.join(run, "logs")) if fs)
    assert len(events) >= 4
    import keras_amb  # noqa: F401  (registers the classes)

    model = keras.saving.load_model(os.path.join(run, "model.keras"), safe_mode=True)
    assert model.complement_objective and model.mining and not model.bypass
    metrics = json.load(open(os.path.join(run, "test_metrics.json")))
    assert 0.0 <= metrics["top1"] <= 1.0


def test_bad_config_is_one_clear_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochz: 3\n")
    result = keras_amb_cli(["train", "--config", str(path), "--output", str(tmp_path / "r")])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "'epochz'" in result.stderr and str(path) in result.stderr
    result = keras_amb_cli(["train", "--no-amb", "--cot", "--output", str(tmp_path / "r2")])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "cot needs the attention mining branch" in result.stderr


def test_folder_with_bad_images(tmp_path):
    from PIL import Image
    import numpy as np

    root = tmp_path / "images"
    for k, cls in enumerate(("left", "right")):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            image = np.full((24, 24, 3), 60, np.uint8)
            image[:, 12 * k : 12 * (k + 1)] = 220  # the bright half is the class
            Image.fromarray(image).save(root / cls / f"{i}.png")
    # Awkward but readable files train like any other image.
    good = write_good_images(str(root / "right" / "odd"))
    huge = write_huge_image(root / "right" / "huge.jpg", (60, 220, 60))
    bad = write_bad_images(str(root / "left"))
    args = ["train", "--dataset", str(root), "--model", "abn", "--epochs", "1",
            "--backbone", "resnet_tiny", "--image-size", "32", "--weights", "none",
            "--batch-size", "8"]
    result = keras_amb_cli(args + ["--output", str(tmp_path / "r1")])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    for path in bad.values():
        assert path in result.stderr
    for path in list(good.values()) + [huge]:
        assert path not in result.stderr, path
    assert not os.path.exists(tmp_path / "r1" / "model.keras")
    result = keras_amb_cli(args + ["--skip-bad-images", "--output", str(tmp_path / "r2")])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Left out {len(bad)} unreadable image(s)" in result.stdout
    assert os.path.isfile(tmp_path / "r2" / "model.keras")


def test_resume_after_a_killed_run(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(RESUMABLE_CONFIG)
    run = str(tmp_path / "run")
    proc = start_keras_amb(["train", "--config", str(config), "--output", run])
    state_path = os.path.join(run, "state.json")
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if os.path.isfile(state_path):
            state = json.load(open(state_path))
            if state["stage"] == "proposed" or state["completed_epochs"] >= 1:
                time.sleep(random.Random(0).uniform(0.0, 1.0))
                proc.send_signal(signal.SIGKILL)
                killed_at = json.load(open(state_path))
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run finished or stalled before it could be killed"
    result = keras_amb_cli(["train", "--resume", run])
    assert result.returncode == 0, result.stderr[-3000:]
    assert _history(run) == [("abn", 1), ("abn", 2), ("proposed", 1), ("proposed", 2), ("proposed", 3)]
    state = json.load(open(state_path))
    assert state["finished"]
    import keras_amb  # noqa: F401

    keras.saving.load_model(os.path.join(run, "model.keras"), safe_mode=True)
    result = keras_amb_cli(["train", "--resume", run, "--epochs", "4"])
    assert result.returncode != 0 and "do not combine" in result.stderr


def test_edited_maps_feed_back_into_training(tmp_path):
    """visualize --save-maps output, edited, trains the human-knowledge baseline."""
    from PIL import Image
    import numpy as np

    root = tmp_path / "images"
    for k, cls in enumerate(("left", "right")):
        (root / cls).mkdir(parents=True)
        for i in range(8):
            image = np.full((24, 24, 3), 60, np.uint8)
            image[:, 12 * k : 12 * (k + 1)] = 220
            Image.fromarray(image).save(root / cls / f"{cls}{i}.png")
    args = ["--backbone", "resnet_tiny", "--image-size", "32", "--weights", "none",
            "--batch-size", "8", "--epochs", "1"]
    result = keras_amb_cli(["train", "--dataset", str(root), "--model", "abn",
                            "--output", str(tmp_path / "abn")] + args)
    assert result.returncode == 0, result.stderr[-3000:]
    maps = tmp_path / "vis"
    result = keras_amb_cli(["visualize", str(root / "left"), "--model", str(tmp_path / "abn"),
                            "--save-maps", "--output", str(maps)])
    assert result.returncode == 0, result.stderr[-3000:]
    edited = maps / "maps" / "left0.png"
    grey = np.asarray(Image.open(edited))
    assert grey.shape == (24, 24)  # the original image's size
    Image.fromarray(np.where(np.arange(24)[None, :] < 12, 255, 0).astype(np.uint8)
                    .repeat(24, 0)).save(edited)  # the "person's" correction
    result = keras_amb_cli(["train", "--dataset", str(root), "--model", "abn",
                            "--attention-targets", str(maps / "maps"),
                            "--init-from", str(tmp_path / "abn"),
                            "--output", str(tmp_path / "human")] + args)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "human" / "history.csv") as f:
        row = next(csv.DictReader(f))
    assert row["map_loss"] and float(row["map_loss"]) >= 0.0
    result = keras_amb_cli(["train", "--attention-targets", str(tmp_path / "nope"),
                            "--model", "abn", "--output", str(tmp_path / "bad")] + args)
    assert result.returncode != 0 and "attention_targets" in result.stderr
