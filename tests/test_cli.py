import csv
import json
import os
import shutil

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import TINY_CONFIG
from tests.conftest import keras_amb_cli
from tests.conftest import keras_amb_cli_here
from tests.images import write_bad_images
from tests.images import write_good_images
from tests.images import write_halves_dataset
from tests.images import write_huge_image

pytestmark = pytest.mark.slow


def _history(run):
    with open(os.path.join(run, "history.csv")) as f:
        return [(r["stage"], int(r["epoch"])) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`keras-amb train` 1 + 1 epochs on a tiny synthetic config, once per module."""
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    run = str(root / "run")
    result = keras_amb_cli(["train", "--config", str(config), "--output", run, "--seed", "3"])
    return {"run": run, "result": result, "config": str(config), "root": root}


@pytest.mark.backend_independent
def test_help_teaches():
    result = keras_amb_cli(["train", "--help"])
    assert result.returncode == 0
    # Click wraps the help to the terminal's width: compare with single spaces.
    text = " ".join(result.stdout.split())
    for needle in ("--dataset", "--resume", "--no-cot", "--architecture", "--no-flip",
                   "--print-config", "Data:", "Model:", "Schedule and optimizer:",
                   "Research switches", "--momentum", "--weight-decay", "--optimizer", "Examples:",
                   "[config: epochs, default 8]", "[config: backbone, default resnet_tiny]"):
        assert needle in text, needle
    for command in ("predict", "info", "visualize", "evaluate", "export", "ablate", "review"):
        result = keras_amb_cli([command, "--help"])
        assert result.returncode == 0 and "Example" in result.stdout, command
        # One habit: every command that reads a model takes --model.
        assert command == "ablate" or "--model" in result.stdout, command


@pytest.mark.backend_independent("torch")  # spreads the suites' time: TensorFlow's is the longest
def test_print_config_shows_the_resolved_config(tmp_path):
    result = keras_amb_cli(["train", "--config", "synthetic_v2", "--epochs", "3", "--no-flip",
                            "--crop-scale", "0.5", "0.9", "--print-config"])
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    assert config["epochs"] == 3 and config["flip"] is False
    assert config["crop_scale"] == [0.5, 0.9] and config["synthetic"]["version"] == "2"
    assert not os.path.exists("saved_models/synthetic-mining") and "Run " not in result.stdout
    # --set reaches keys no option has, dotted and by section; it comes last.
    result = keras_amb_cli_here([
        "train", "--config", "synthetic_v2", "--lr", "0.2", "--print-config",
        "--set", "optimizer.momentum=0.5", "--set", "model.pc_weight=1e-2",
        "--set", "synthetic.train_size=300", "--set", "schedule.epochs=2"])
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    assert config["optimizer"]["learning_rate"] == 0.2 and config["optimizer"]["momentum"] == 0.5
    assert config["pc_weight"] == 0.01 and config["epochs"] == 2
    assert config["synthetic"]["train_size"] == 300 and config["synthetic"]["version"] == "2"
    result = keras_amb_cli_here(["train", "--set", "runtime.backend=jax", "--print-config"])
    assert result.returncode == 2 and "--set runtime.backend: use --backend instead" in (
        result.stderr)
    result = keras_amb_cli_here(["train", "--set", "runtime.epochs=2", "--print-config"])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: command line: --set runtime.epochs: 'epochs' is in the schedule section, "
        "not runtime (write schedule.epochs or epochs)"]


@pytest.mark.backend_independent
def test_each_train_option_is_listed_under_the_section_of_its_key():
    import keras_amb.cli.main  # noqa: F401 (imports the commands in order)
    from keras_amb.cli.train import _KEYS
    from keras_amb.cli.train import train
    from keras_amb.app.run_config import SECTION_OF

    grouped, research = 0, 0
    for param in train.params:
        if param.name in _KEYS:
            section = SECTION_OF[_KEYS[param.name].split(".")[0]]
            if param.help_group == "research":
                assert section == "model", param.name  # research switches are the model's
                research += 1
            else:
                assert param.help_group == section, param.name
            grouped += 1
    assert grouped == len(_KEYS) > 25 and research >= 5


def test_train_end_to_end_writes_a_complete_run(trained):
    run, result = trained["run"], trained["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Test: top-1" in result.stdout and run in result.stdout
    assert "oneDNN" not in result.stderr and "cuInit" not in result.stderr
    for name in ("config.yaml", "labels.txt", "history.csv", "model.keras", "abn.keras",
                 "state.json", "test_metrics.json",
                 "checkpoints/mining-best.keras", "checkpoints/mining-last.keras"):
        assert os.path.isfile(os.path.join(run, name)), name
    config = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    assert config["seed"] == 3 and config["epochs"] == 1 and config["backbone"] == "resnet_tiny"
    labels = open(os.path.join(run, "labels.txt")).read().split()
    assert len(labels) == 4
    assert _history(run) == [("abn", 1), ("mining", 1)]
    assert any("attention" in d for d, _, fs in os.walk(os.path.join(run, "logs")) if fs)
    import keras_amb  # noqa: F401  (registers the classes)

    model = keras.saving.load_model(os.path.join(run, "model.keras"), safe_mode=True)
    assert model.cot and model.amb and not model.bypass
    assert model.class_names == labels and model.resize_ratio == 1.0
    metrics = json.load(open(os.path.join(run, "test_metrics.json")))
    evaluated = model.evaluate(*_test_split(), verbose=0, return_dict=True)
    assert metrics["top1"] == pytest.approx(evaluated["top1"], abs=1e-6)


def _test_split():
    from keras_amb.data import load_source
    from keras_amb.data import prepare

    config = yaml.safe_load(TINY_CONFIG)
    source = load_source("synthetic", synthetic_params=config["synthetic"])
    batches = list(prepare(source.examples("test"), 32, 64, False, resize_ratio=1.0))
    return (np.concatenate([x.numpy() for x, _ in batches]),
            np.concatenate([y.numpy() for _, y in batches]))


@pytest.mark.backend_independent
def test_bad_config_is_one_clear_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochz: 3\n")
    result = keras_amb_cli(["train", "--config", str(path), "--output", str(tmp_path / "r")])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "'epochz'" in result.stderr and str(path) in result.stderr
    result = keras_amb_cli_here(["train", "--no-amb", "--cot", "--output", str(tmp_path / "r2")])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "needs amb=True" in result.stderr


# Under torch: the TensorFlow suite is the longest (its distribution tests).
@pytest.mark.backend_independent("torch")
def test_folder_with_bad_images(tmp_path):
    root = tmp_path / "images"
    write_halves_dataset(root)
    # Awkward but readable files train like any other image.
    good = write_good_images(str(root / "right" / "odd"))
    huge = write_huge_image(root / "right" / "huge.jpg", (60, 220, 60))
    bad = write_bad_images(str(root / "left"))
    args = ["train", "--dataset", str(root), "--architecture", "abn", "--epochs", "1",
            "--backbone", "resnet_tiny", "--image-size", "32", "--weights", "none",
            "--batch-size", "8"]
    result = keras_amb_cli(args + ["--output", str(tmp_path / "r1")])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    for path in bad.values():
        assert path in result.stderr
    for path in list(good.values()) + [huge]:
        assert path not in result.stderr, path
    assert not os.path.exists(tmp_path / "r1" / "model.keras")
    result = keras_amb_cli_here(args + ["--skip-bad-images", "--output", str(tmp_path / "r2")])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Left out {len(bad)} unreadable image(s)" in result.stdout
    assert os.path.isfile(tmp_path / "r2" / "model.keras")


@pytest.mark.backend_independent("torch")
def test_edited_maps_feed_back_into_training(tmp_path):
    """visualize --save-maps output, edited, trains the human-knowledge baseline."""
    root = tmp_path / "images"
    write_halves_dataset(root, per_class=8)
    args = ["--backbone", "resnet_tiny", "--image-size", "32", "--weights", "none",
            "--batch-size", "8", "--epochs", "1"]
    result = keras_amb_cli(["train", "--dataset", str(root), "--architecture", "abn",
                            "--output", str(tmp_path / "abn")] + args)
    assert result.returncode == 0, result.stderr[-3000:]
    maps = tmp_path / "vis"
    # The commands after the first run in this process (keras_amb_cli_here).
    result = keras_amb_cli_here(["visualize", str(root / "left"), "--model", str(tmp_path / "abn"),
                                 "--save-maps", "--output", str(maps)])
    assert result.returncode == 0, result.stderr[-3000:]
    edited = maps / "maps" / "left0.png"
    grey = np.asarray(Image.open(edited))
    assert grey.shape == (24, 24)  # the original image's size
    correction = np.where(np.arange(24)[None, :] < 12, 255, 0).astype(np.uint8).repeat(24, 0)
    Image.fromarray(correction).save(edited)  # the "person's" correction
    result = keras_amb_cli_here(["train", "--dataset", str(root), "--architecture", "abn",
                                 "--attention-targets", str(maps / "maps"),
                                 "--init-from", str(tmp_path / "abn"),
                                 "--output", str(tmp_path / "human")] + args)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "human" / "history.csv") as f:
        row = next(csv.DictReader(f))
    # One image in 16 has a map (the corrected one): a real, positive loss.
    assert 0.0 < float(row["attention_target_loss"]) < 1.0
    result = keras_amb_cli_here(["train", "--attention-targets", str(tmp_path / "nope"),
                                 "--architecture", "abn", "--output", str(tmp_path / "bad")] + args)
    assert result.returncode != 0 and "attention_targets" in result.stderr


def test_predict_writes_one_record_per_image(trained, tmp_path):
    inputs = tmp_path / "in"
    good = write_good_images(str(inputs))
    bad = write_bad_images(str(tmp_path / "bad"))
    bad.pop("folder.jpg")
    args = ["predict", str(inputs), *bad.values(), "--model", trained["run"], "--top-k", "3",
            "--batch-size", "4"]
    result = keras_amb_cli(args + ["--save-maps", str(tmp_path / "maps")])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(good) + len(bad)
    by_path = {r["path"]: r for r in records}
    labels = open(os.path.join(trained["run"], "labels.txt")).read().split()
    for path in good.values():
        record = by_path[path]
        assert [e["class"] for e in record["top_k"]] and len(record["top_k"]) == 3
        assert set(e["class"] for e in record["top_k"]) <= set(labels)
        scores = [e["score"] for e in record["top_k"]]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
        assert 0 < record["attention_peak"]["x"] < 1 and 0 < record["attention_peak"]["y"] < 1
        assert np.load(record["map_raw"]).shape == (8, 8)
        assert record["map"] == str(tmp_path / "maps" / (os.path.splitext(
            os.path.relpath(path, inputs))[0] + ".png"))
        assert np.asarray(Image.open(record["map"])).shape == np.asarray(Image.open(path)).shape[:2]
    index = json.load(open(tmp_path / "maps" / "index.json"))["maps"]
    assert set(index) == {os.path.relpath(p, inputs) for p in good.values()}
    for path in bad.values():
        assert path in by_path[path]["error"] and path in result.stderr
    # The same predictions as CSV, to a file.
    out = tmp_path / "preds.csv"
    result = keras_amb_cli_here(args + ["--format", "csv", "--output", str(out),
                                        "--save-maps", str(tmp_path / "maps")])
    assert result.returncode == 1
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == len(records)
    for row in rows:
        record = by_path[row["path"]]
        if "error" in record:
            assert row["error"] == record["error"] and not row["class_1"]
        else:
            assert row["class_1"] == record["top_k"][0]["class"]
            assert (row["map"], row["map_raw"]) == (record["map"], record["map_raw"])
            assert float(row["score_1"]) == pytest.approx(record["top_k"][0]["score"], abs=1e-6)


def test_a_bare_model_file_predicts_like_its_run(trained, tmp_path):
    bare = tmp_path / "elsewhere" / "copy.keras"
    bare.parent.mkdir()
    shutil.copy(os.path.join(trained["run"], "model.keras"), bare)
    image = write_good_images(str(tmp_path / "in"))["rgb.jpg"]
    outputs = []
    for model in (trained["run"], str(bare)):
        result = keras_amb_cli_here(["predict", image, "--model", model, "--top-k", "4"])
        assert result.returncode == 0, result.stderr[-2000:]
        outputs.append(json.loads(result.stdout)["top_k"])
    assert outputs[0] == outputs[1]
    labels = open(os.path.join(trained["run"], "labels.txt")).read().split()
    assert sorted(e["class"] for e in outputs[0]) == sorted(labels)
    result = keras_amb_cli_here(["info", str(bare)])
    assert result.returncode == 0 and labels[0] in result.stdout
    result = keras_amb_cli_here(["evaluate", "--model", str(bare), "--json", "--limit", "8"])
    assert result.returncode != 0 and "pass --dataset" in result.stderr


@pytest.mark.backend_independent
def test_info_describes_a_run(trained):
    result = keras_amb_cli(["info", trained["run"]])
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    labels = open(os.path.join(trained["run"], "labels.txt")).read().split()
    for needle in ("AttentionMiningNetwork: AMB (attention only) + PC + COT + area, no bypass",
                   "resnet_tiny",
                   f"4: {labels[0]}", "32x32", "finished", "last epoch      mining 1",
                   "model.keras", "history.csv", "1 ABN + 1 epochs"):
        assert needle in out, needle


def test_visualize_labels_rows_and_keeps_every_models_maps(trained, tmp_path):
    image = write_good_images(str(tmp_path / "in"))["rgb.jpg"]
    out = tmp_path / "vis"
    run = trained["run"]
    result = keras_amb_cli(["visualize", image, "--model", run, "--compare",
                            os.path.join(run, "abn.keras"), "--method", "all", "--save-maps",
                            "--alpha", "0.7", "--output", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    saved = sorted(os.listdir(out / "maps"))
    # One file per model and method: the two rows' maps do not overwrite each other.
    per_model = [f for f in saved if f.count(".") == 3]
    assert len(per_model) == 6, saved
    assert len({f.split(".")[1] for f in per_model}) == 2
    figure = Image.open(out / "rgb.png")
    assert figure.size[0] > 1400 and figure.size[1] > 700  # two rows of five panels
    labels = open(os.path.join(run, "labels.txt")).read().split()
    # --class explains the class asked for: two classes, two different CAMs.
    cams = []
    for name in labels[1:3]:
        folder = tmp_path / f"vis-{name}"
        result = keras_amb_cli_here(["visualize", image, "--model", run, "--method", "cam",
                                     "--class", name, "--save-maps", "--output", str(folder)])
        assert result.returncode == 0, result.stderr[-2000:]
        (cam,) = [f for f in os.listdir(folder / "maps") if f.endswith(".cam.npy")]
        cams.append(np.load(folder / "maps" / cam))
    assert cams[0].shape == cams[1].shape and np.abs(cams[0] - cams[1]).max() > 1e-3
    result = keras_amb_cli_here(["visualize", image, "--model", run, "--class", "no_such_bird",
                                 "--output", str(tmp_path / "vis3")])
    assert result.returncode != 0 and "'no_such_bird' is not a class" in result.stderr
