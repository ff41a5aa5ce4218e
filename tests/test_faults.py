"""Fault injection: nothing a user gives is lost, nothing an image does
exhausts memory, and every mistake is one line naming the file or option.

Each case asserts the exit code, a one-line message naming what is at fault,
and that no input or earlier output changed (hashes before and after). The
command line runs in-process (click's CliRunner) and on one tiny model file
built once, so the file stays fast; nothing here depends on the backend
except where marked.
"""

import csv
import errno
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib

import keras
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from keras_amb import AttentionMiningNetwork
from keras_amb import files
from keras_amb.app import runs
from keras_amb.app import trainer
from keras_amb.cli.main import cli
from tests.helpers import tiny_model_file

# What no backend changes here (files, outputs, messages) runs once, under
# torch, the shortest suite; the TensorFlow suite sets the time of the three.
ONCE_UNDER = "torch"
SIZE = 32
CLASSES = ["wren", "finch", "crow", "jay"]
TINY_TRAIN = {
    "backbone": "resnet_tiny", "weights": None, "image_size": SIZE, "batch_size": 8,
    "pretrain_epochs": 1, "epochs": 1, "attention_images": 0, "resize_ratio": 1.0,
    "crop_scale": [0.35, 1.0], "optimizer": {"name": "sgd", "learning_rate": 0.01},
}


# === Helpers ===

def hashes(*roots):
    """`{path: sha1}` of every file under `roots` (files or folders)."""
    out = {}
    for root in roots:
        root = str(root)
        walk = [(os.path.dirname(root), [], [os.path.basename(root)])] if os.path.isfile(
            root) else os.walk(root)
        for dirpath, _, names in walk:
            for name in names:
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    out[path] = hashlib.sha1(f.read()).hexdigest()
    return out


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *names, code=1):
    """The result failed with `code` and one line naming each of `names`."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def write_png(path, size=(40, 30), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def png_bomb(path, width, height):
    """A real PNG of `width x height` black pixels (grey), compressed row by
    row so writing it needs no memory; a few hundred KB on disk."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", body))
        f.write(chunk(b"IEND", b""))
    return str(path)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny keras-amb model file (untrained: only files are under test)."""
    return tiny_model_file(tmp_path_factory.mktemp("model"), CLASSES, SIZE)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    return [write_png(folder / "a.png", seed=1), write_png(folder / "b.png", seed=2)]


# === 1. Never destroy an input ===

@pytest.mark.backend_independent("tensorflow")  # runs `export` in this process
@pytest.mark.parametrize("case", ["predict_image", "predict_model", "save_maps", "visualize",
                                  "onnx_model"])
def test_an_output_that_is_an_input_is_refused_before_any_work(case, model_file, photos,
                                                               tmp_path):
    model = str(tmp_path / "m.keras")
    shutil.copy(model_file, model)
    folder = os.path.dirname(photos[0])
    before = hashes(folder, model)
    args, names = {
        "predict_image": (["predict", *photos, "--model", model, "--output", photos[0]],
                          ["--output", photos[0], "input image"]),
        "predict_model": (["predict", photos[1], "--model", model, "--output", model],
                          ["--output", model, "model file"]),
        "save_maps": (["predict", folder, "--model", model, "--save-maps", folder],
                      ["--save-maps", folder, "input image"]),
        "visualize": (["visualize", folder, "--model", model, "--output", folder],
                      ["--output", folder, "input image"]),
        "onnx_model": (["export", "--model", model, "--format", "onnx", "--output", model],
                       ["--output", model, "model file"]),
    }[case]
    one_line_error(invoke(*args), *names)
    assert hashes(folder, model) == before
    assert sorted(os.listdir(folder)) == ["a.png", "b.png"]


@pytest.mark.backend_independent(ONCE_UNDER)
def test_an_output_over_a_run_folders_own_files_is_refused(model_file, photos, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(model_file, run / "model.keras")
    (run / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (run / "config.yaml").write_text("resize_ratio: 1.0\n")
    before = hashes(run)
    for name in ("config.yaml", "labels.txt", "model.keras"):
        one_line_error(invoke("predict", photos[0], "--model", run, "--output", run / name),
                       "--output", run / name, "refusing to overwrite it")
    assert hashes(run) == before


@pytest.mark.backend_independent(ONCE_UNDER)
def test_visualize_never_reads_its_own_earlier_figures(model_file, photos):
    folder = os.path.dirname(photos[0])
    out = os.path.join(folder, "vis")
    for _ in range(2):
        result = invoke("visualize", folder, "--model", model_file, "--output", out, "--save-maps")
        assert result.exit_code == 0, result.output
        assert "Wrote 2 figure(s)" in result.output
    assert sorted(f for f in os.listdir(out) if f.endswith(".png")) == ["a.png", "b.png"]
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


@pytest.mark.backend_independent(ONCE_UNDER)
def test_predict_output_is_written_whole_or_not_at_all(model_file, photos, tmp_path,
                                                       monkeypatch):
    out = str(tmp_path / "nodir" / "p.jsonl")  # its folder is made
    result = invoke("predict", *photos, "--model", model_file, "--output", out)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in open(out)]
    assert [os.path.basename(r["path"]) for r in records] == ["a.png", "b.png"]
    before = hashes(out)

    # A failure after the first record (here: the disk fills up) keeps the old file.
    from keras_amb import inference

    real = inference.predict_files

    def fails_midway(*args, **kwargs):
        for i, prediction in enumerate(real(*args, **kwargs)):
            if i == 1:
                raise files.write_error(out, OSError(errno.ENOSPC, "No space left on device"))
            yield prediction

    monkeypatch.setattr(inference, "predict_files", fails_midway)
    one_line_error(invoke("predict", *photos, "--model", model_file, "--output", out),
                   out, "no space left")
    assert hashes(out) == before
    assert os.listdir(os.path.dirname(out)) == ["p.jsonl"]


# === 3. What an image may cost ===

@pytest.mark.backend_independent(ONCE_UNDER)
def test_read_image_refuses_bombs_and_slivers_from_the_header(tmp_path):
    from keras_amb.data.image_io import ImageReadError
    from keras_amb.data.image_io import read_image

    sliver = str(tmp_path / "sliver.png")
    Image.new("L", (1, 60000)).save(sliver, optimize=True)
    assert os.path.getsize(sliver) < 1000
    bomb = png_bomb(tmp_path / "bomb.png", 12000, 12000)
    with pytest.raises(ImageReadError, match="sliver.png: 1x60000 pixels is too elongated"):
        read_image(sliver)
    with pytest.raises(ImageReadError, match="bomb.png: 12000x12000 pixels is over the limit"):
        read_image(bomb)
    # Configurable: by argument, and by environment for the command line.
    assert read_image(sliver, max_aspect_ratio=60000).shape == (60000, 1, 3)
    with pytest.raises(ImageReadError, match="over the limit of 100"):
        read_image(write_png(tmp_path / "ok.png"), max_pixels=100)


@pytest.mark.backend_independent(ONCE_UNDER)
def test_predict_refuses_a_sliver_and_predicts_the_rest(model_file, photos, tmp_path):
    sliver = str(tmp_path / "sliver.png")
    Image.new("L", (1, 60000)).save(sliver, optimize=True)
    result = invoke("predict", photos[0], sliver, "--model", model_file)
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert "top_k" in records[0] and "too elongated" in records[1]["error"]


@pytest.mark.backend_independent(ONCE_UNDER)
def test_model_arguments_have_upper_limits(tmp_path):
    from keras_amb.app import config as amb_config

    for key, value in (("image_size", 100000), ("resize_ratio", 50.0)):
        path = tmp_path / f"{key}.yaml"
        path.write_text(f"{key}: {value}\n")
        with pytest.raises(amb_config.ConfigError, match=f"{key} must be"):
            amb_config.resolve(str(path))
    with pytest.raises(ValueError, match="image_size"):
        AttentionMiningNetwork(num_classes=4, backbone="resnet_tiny", image_size=100000)


def _peak_rss_mb():
    """This process's peak resident memory since the last `_reset_peak_rss`."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size
        return True
    except OSError:
        return False


@pytest.mark.backend_independent("tensorflow")  # runs `export` in this process
def test_exported_saved_model_refuses_hostile_images_in_bounded_memory(model_file, photos,
                                                                       tmp_path):
    import tensorflow as tf

    from keras_amb.app import export

    sliver = str(tmp_path / "sliver.png")
    Image.new("L", (1, 60000)).save(sliver, optimize=True)
    bomb = png_bomb(tmp_path / "bomb.png", 12000, 12000)
    junk = str(tmp_path / "junk.png")
    with open(junk, "wb") as f:
        f.write(b"<html>not an image</html>" * 4)
    target = export.export_saved_model(runs.load_model(model_file), str(tmp_path / "serving"))
    # The exported model itself, as TF Serving loads it.
    serve = tf.saved_model.load(target).signatures["serving_default"]
    good = open(photos[0], "rb").read()
    serve(image_bytes=tf.constant([good, good]))
    measured = _reset_peak_rss()
    base = _peak_rss_mb()
    for path, reason in ((sliver, "too elongated (longer side over 20 times the shorter)"),
                         (bomb, "over the limit of 50000000 pixels"),
                         (junk, "not a JPEG, PNG, BMP, GIF or still WebP image")):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            serve(image_bytes=tf.constant([good, open(path, "rb").read(), good]))
        line = [x for x in error.value.message.splitlines() if "image_bytes" in x][0]
        assert reason in line and "refused before decoding" in line, line
    # Decoding and resizing the sliver took the old graph ~780 MB on this
    # 32-px model, the bomb 144 MB and more; refused from their headers,
    # they cost nothing.
    if measured:
        assert _peak_rss_mb() - base < 50, (base, _peak_rss_mb())
    out = serve(image_bytes=tf.constant([good]))  # and the model keeps serving
    assert out["probabilities"].shape == (1, 4)


# === 4. Files others can read; 5. one-line errors ===

@pytest.mark.backend_independent(ONCE_UNDER)
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_writes_keep_the_users_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        files.atomic_write_text(str(tmp_path / "state.json"), "{}")
        stream = files.AtomicFile(str(tmp_path / "p.jsonl"), encoding="utf-8")
        stream.write("{}\n")
        stream.close()
    finally:
        os.umask(old)
    for name in ("state.json", "p.jsonl"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.backend_independent(ONCE_UNDER)
def test_full_disk_keeps_the_old_file_and_names_the_new_one(tmp_path, monkeypatch):
    state = tmp_path / "run" / "state.json"
    files.atomic_write_text(str(state), '{"stage": "abn"}')

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(files.FileWriteError, match=f"Cannot write {state}: no space left"):
        runs.Run(str(tmp_path / "run")).write_state({"stage": "proposed"})
    assert state.read_text() == '{"stage": "abn"}'
    assert os.listdir(tmp_path / "run") == ["state.json"]


@pytest.mark.backend_independent("tensorflow")  # runs `export` in this process
def test_model_files_that_are_not_keras_amb_models(model_file, tmp_path, monkeypatch):
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    text = tmp_path / "text.keras"
    text.write_text("hello")
    plain = str(tmp_path / "plain.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    image = write_png(tmp_path / "x.png")
    before = hashes(tmp_path)
    for path, reason in ((empty, "empty file"), (text, "not a .keras model file"),
                         (plain, "not a keras-amb model (it holds a Sequential)")):
        for args in (["info", path], ["predict", image, "--model", path],
                     ["export", "--model", path, "--output", tmp_path / "out"],
                     ["evaluate", "--model", path, "--dataset", "synthetic",
                      "--output", tmp_path / "ev"]):
            one_line_error(invoke(*args), path, reason)
    assert hashes(tmp_path) == before
    # A file this user may not read says so (not "File not found").
    real_open = open

    def denied(path, *args, **kwargs):
        if str(path) == model_file:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(runs.RunError, match="permission denied"):
        runs.check_model_file(model_file)


@pytest.mark.backend_independent("tensorflow")  # runs `export` in this process
def test_unwritable_outputs_fail_before_any_work(model_file, photos, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    bad = blocker / "out"
    for args in (["visualize", photos[0], "--model", model_file, "--output", bad],
                 ["predict", photos[0], "--model", model_file, "--output", bad / "p.jsonl"],
                 ["predict", photos[0], "--model", model_file, "--save-maps", bad],
                 ["evaluate", "--model", model_file, "--dataset", "synthetic", "--output", bad],
                 ["export", "--model", model_file, "--output", bad],
                 ["export", "--model", model_file, "--format", "onnx", "--output",
                  bad / "m.onnx"]):
        one_line_error(invoke(*args), "--", str(bad))
    line = one_line_error(invoke("export", "--model", model_file, "--output", blocker),
                          "--output", blocker)
    assert "is a file" in line
    assert blocker.read_text() == "not a folder"


CONFIG_CASES = [
    ("seed: -1\n", "seed"),
    ("synthetic: {train_size: -5}\n", "synthetic.train_size"),
    ('synthetic: {image_size: "64"}\n', "synthetic.image_size"),
    ("optimizer: {momentum: fast}\n", "optimizer.momentum"),
    ("lr_schedule: {gamma: ten}\n", "lr_schedule.gamma"),
    ("optimizer: {name: sgd, learning_rte: 0.1}\n", "optimizer"),
    ("jit_compile: 1\n", "jit_compile"),
    ("cache: yes please\n", "cache"),
]


@pytest.mark.backend_independent(ONCE_UNDER)
@pytest.mark.parametrize("text,key", CONFIG_CASES)
def test_bad_config_values_fail_before_the_run_folder_exists(text, key, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    run = tmp_path / "run"
    line = one_line_error(invoke("train", "--config", path, "--output", run), path, key)
    assert "must be" in line
    assert not run.exists()


@pytest.mark.backend_independent(ONCE_UNDER)
def test_the_command_line_is_blamed_for_its_own_options(tmp_path):
    one_line_error(invoke("train", "--epochs", "0", "--output", tmp_path / "r"),
                   "command line: --epochs must be a positive integer, got 0", code=2)
    path = tmp_path / "short.yaml"
    path.write_text("optimizer: sgd\nlr_schedule: cosine\n")
    result = invoke("train", "--config", path, "--print-config")
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["optimizer"]["name"] == "sgd" and printed["optimizer"]["learning_rate"] == 0.05
    assert printed["lr_schedule"]["name"] == "cosine"


@pytest.mark.backend_independent(ONCE_UNDER)
@pytest.mark.parametrize("state,config,reason", [
    ('{"stages": ["abn"], "stage', None, "state.json: damaged, not JSON"),
    ("[]", None, "state.json: damaged, must hold a JSON object"),
    ('{"stages": ["abn"], "stage_index": 0, "completed_epochs": 0}', {"backend": "nonsense"},
     "config.yaml: backend must be tensorflow, jax or torch, got 'nonsense'"),
])
def test_resume_of_a_damaged_run_is_one_line(state, config, reason, tmp_path):
    from keras_amb.app import config as amb_config

    run = tmp_path / "run"
    run.mkdir()
    resolved = amb_config.resolve(None, {}).to_dict()
    resolved.update(config or {})
    (run / "config.yaml").write_text(yaml.safe_dump(resolved))
    (run / "state.json").write_text(state)
    before = hashes(run)
    one_line_error(invoke("train", "--resume", run), str(run), reason)
    assert hashes(run) == before


# === 6. Failed runs leave nothing behind; 7. kills and races ===

def folder_dataset(root, classes=("ant", "bee", "cat"), per_class=10, hidden=("..hidden",)):
    for c, name in enumerate(list(classes) + list(hidden)):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            write_png(os.path.join(root, name, f"{i}.png"), (36, 36), seed=100 * c + i)
    return str(root)


def tiny_config(dataset):
    from keras_amb.app import config as amb_config

    # folder.yaml's imagenet weights are for resnet50
    return amb_config.resolve(None, dict(TINY_TRAIN, dataset=dataset), ["weights=null"])


@pytest.mark.backend_independent(ONCE_UNDER)
def test_a_start_that_fails_leaves_nothing_behind(tmp_path, monkeypatch):
    from keras_amb.app import trainer
    from keras_amb.errors import DatasetError

    monkeypatch.chdir(tmp_path)
    one_class = folder_dataset(tmp_path / "one", classes=("ant",), per_class=2, hidden=())
    for run_dir in (None, str(tmp_path / "given")):
        with pytest.raises(DatasetError, match="needs at least two class subfolders"):
            trainer.train(tiny_config(one_class), run_dir=run_dir, log=lambda line: None)
    assert not os.path.exists(tmp_path / "given")
    assert os.listdir(tmp_path / "saved_models") == []  # no half-made run, no stray .lock


@pytest.fixture(scope="module")
def killed_everywhere(tmp_path_factory):
    """One tiny training, with a snapshot of its run folder taken at every
    rename of an atomic write: what a kill at that instant leaves on disk.

    The folder starts as a killed start would leave it (config, labels and
    state written, no epoch), and the dataset has a hidden class folder.
    """
    from keras_amb.app import trainer

    root = tmp_path_factory.mktemp("killed")
    dataset = folder_dataset(root / "data")
    run_dir = str(root / "run")
    config = tiny_config(dataset)
    runs.Run(run_dir).initialise(config, ["ant", "bee", "cat"], trainer.stages_for(config.model, config.schedule))
    open(os.path.join(run_dir, runs.LOCK_FILE), "w").close()
    snapshots, real_replace = [], os.replace

    def replace(src, dst, *args, **kwargs):
        if os.path.dirname(os.path.abspath(dst)).startswith(run_dir):
            snapshot = str(root / f"snapshot-{len(snapshots):02d}")
            shutil.copytree(run_dir, snapshot)
            snapshots.append((os.path.relpath(dst, run_dir), snapshot))
        return real_replace(src, dst, *args, **kwargs)

    log = []
    files.os.replace = replace
    try:
        result = trainer.train(config, run_dir=run_dir, log=log.append, verbose=0)
    finally:
        files.os.replace = real_replace
    return {"run": run_dir, "result": result, "snapshots": snapshots, "log": log,
            "config": config}


def _complete(path):
    """True if a run file is whole (parses as what its name says)."""
    if path.endswith(".keras"):
        import zipfile

        runs.check_model_file(path)
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        return isinstance(json.loads(text), dict)
    if path.endswith(".yaml"):
        return isinstance(yaml.safe_load(text), dict)
    if path.endswith(".csv"):
        rows = list(csv.reader(text.splitlines()))
        return all(len(r) == len(rows[0]) for r in rows)
    return text.endswith("\n")


@pytest.mark.backend_independent(ONCE_UNDER)
def test_a_killed_start_is_reused_and_hidden_classes_are_reported(killed_everywhere):
    log = "\n".join(killed_everywhere["log"])
    assert "never finished an epoch; starting it again" in log
    assert "Skipped 1 hidden folder(s)" in log and "..hidden" in log
    # The proposed stage copies the weights of the ABN in memory (no reload
    # of abn.keras in the same process).
    assert "Initialising the Attention Mining Network from the ABN just trained" in log
    run = runs.Run(killed_everywhere["run"])
    assert run.labels() == ["ant", "bee", "cat"]
    assert run.load_model().get_class_names() == ["ant", "bee", "cat"]
    with open(run.path("labels.txt")) as f:
        assert len(f.read().splitlines()) == 3
    # Written through temp+rename, yet readable by others as the umask says.
    for name in ("model.keras", "config.yaml", "state.json", "test_metrics.json"):
        assert os.stat(run.path(name)).st_mode & 0o777 == 0o666 & ~files.current_umask(), name


@pytest.mark.backend_independent(ONCE_UNDER)
def test_a_kill_during_any_write_leaves_whole_files(killed_everywhere):
    snapshots = killed_everywhere["snapshots"]
    written = {name for name, _ in snapshots}
    # (history.csv is appended row by row; resuming drops rows past the state.)
    for name in ("config.yaml", "labels.txt", "state.json", "abn.keras",
                 "model.keras", "test_metrics.json", os.path.join("checkpoints",
                                                                   "mining-last.keras")):
        assert name in written, sorted(written)
    for name, snapshot in snapshots:
        for dirpath, dirnames, filenames in os.walk(snapshot):
            dirnames[:] = [d for d in dirnames if d != "logs"]
            for f in filenames:
                if not f.startswith("."):  # .tmp-* is what the kill interrupted
                    assert _complete(os.path.join(dirpath, f)), (name, f)
        if runs.Run(snapshot).state() is None:  # killed while restarting: starts afresh
            assert not os.path.exists(os.path.join(snapshot, "checkpoints")), name
            continue
        state = runs.Run(snapshot).check_state()
        for stage in state["stages"][:state["stage_index"] + 1]:
            if state["completed_epochs"] and stage == state["stage"]:
                assert os.path.isfile(os.path.join(snapshot, "checkpoints", f"{stage}-last.keras"))
    # The next command continues from what a kill while writing model.keras left.
    last = [s for n, s in snapshots if n == "model.keras"][-1]
    result = trainer.resume(last, log=lambda line: None, verbose=0)
    assert os.path.isfile(result.model_path) and "top1" in result.test_metrics


@pytest.mark.backend_independent(ONCE_UNDER)
def test_resume_of_a_finished_run_stops_and_changes_nothing(killed_everywhere, tmp_path):
    run = str(tmp_path / "finished")
    shutil.copytree(killed_everywhere["run"], run)
    with open(os.path.join(run, "config.yaml"), "a") as f:
        f.write("# edited after the run\n")
    config = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    config["image_size"] = 48  # would give wrong metrics if evaluated again
    files.atomic_write_text(os.path.join(run, "config.yaml"), yaml.safe_dump(config))
    before = hashes(run)
    result = invoke("train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert "already finished; nothing to resume (nothing changed)" in result.output
    assert hashes(run) == before


RACING_WRITER = r"""
import sys
from keras_amb import files
path, n = sys.argv[1], int(sys.argv[2])
text = "".join('{"writer": %d, "row": %d}\n' % (n, i) for i in range(20000))
for _ in range(10):
    stream = files.AtomicFile(path, encoding="utf-8")
    for line in text.splitlines(keepends=True):
        stream.write(line)
    stream.close()
    files.atomic_write_text(path, text)
"""


@pytest.mark.backend_independent(ONCE_UNDER)
def test_racing_processes_leave_one_whole_file(tmp_path):
    path = str(tmp_path / "out.jsonl")
    env = dict(os.environ, KERAS_AMB_DEFER_IMPORTS="1")  # no Keras: starts in a blink
    writers = [subprocess.Popen([sys.executable, "-c", RACING_WRITER, path, str(n)], env=env,
                                cwd=os.path.dirname(os.path.dirname(__file__)))
               for n in range(3)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 20000 and len({r["writer"] for r in rows}) == 1
    assert [r["row"] for r in rows] == list(range(20000))
    assert os.listdir(tmp_path) == ["out.jsonl"]  # no temporary file left


@pytest.mark.backend_independent(ONCE_UNDER)
def test_racing_exports_never_share_a_version(tmp_path, monkeypatch):
    import time

    import tensorflow as tf

    from keras_amb.app import export

    def slow_save(module, path, signatures=None):  # both pass the "exists?" check
        os.makedirs(os.path.join(path, "variables"))
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"\0" * 1000)
        time.sleep(0.5)

    class Module:  # what `export_saved_model` calls of the real one
        serve_bytes = serve_images = type("F", (), {"get_concrete_function": lambda self: None})()

    monkeypatch.setattr(tf.saved_model, "save", slow_save)
    monkeypatch.setattr(export, "serving_module", lambda model, **kwargs: Module())
    model = None  # the race is over the version folder, not the model
    root = str(tmp_path / "serving")
    results = []

    def run():
        try:
            results.append(export.export_saved_model(model, root, version=1))
        except export.ExportError as error:
            results.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, str) for r in results) == 1, results
    [error] = [r for r in results if not isinstance(r, str)]
    assert "written by another export meanwhile; versions are never overwritten" in str(error)
    assert sorted(os.listdir(root)) == ["1"]  # no temporary folder left
