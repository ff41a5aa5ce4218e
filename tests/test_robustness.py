import csv
import json
import os
import signal
import time

import keras
import numpy as np
import pytest

from keras_amb import AttentionMiningNetwork
from tests.conftest import BACKEND
from tests.conftest import RESUMABLE_CONFIG
from tests.conftest import keras_amb_cli
from tests.conftest import keras_amb_cli_here
from tests.conftest import run_python
from tests.conftest import start_keras_amb


def _history_rows(run):
    with open(os.path.join(run, "history.csv")) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="op determinism is a TensorFlow switch")
@pytest.mark.slow
def test_seeded_deterministic_runs_are_identical(tiny_config, tmp_path):
    rows = []
    for name in ("a", "b"):
        result = keras_amb_cli(["train", "--config", tiny_config, "--seed", "7", "--deterministic",
                                "--output", str(tmp_path / name)])
        assert result.returncode == 0, result.stderr[-3000:]
        rows.append(_history_rows(tmp_path / name))
    assert rows[0] == rows[1]
    assert len(rows[0]) == 2


@pytest.mark.backend_independent
@pytest.mark.slow
def test_unwritable_output_fails_before_training(tiny_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = keras_amb_cli(["train", "--config", tiny_config, "--output", str(blocker / "run")])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "cannot create it" in result.stderr and str(blocker) in result.stderr


@pytest.mark.backend_independent
@pytest.mark.slow
def test_model_file_from_elsewhere_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    # A Lambda whose code leaves a trace: whoever deserializes and runs it
    # writes `marker` (building the model here writes it once).
    hostile = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x * 2)[1]")
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(hostile)(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    marker.unlink()
    # The file is dangerous: Keras without safe mode runs its code on loading.
    keras.saving.load_model(tmp_path / "lambda.keras", safe_mode=False)
    assert marker.exists()
    marker.unlink()
    (tmp_path / "junk.keras").write_bytes(b"PK\x03\x04 not really a zip")
    # Refused from the archive's config.json, before Keras loads anything:
    # by the installed command, and by every command that takes a model in a
    # process that then has imported neither Keras nor a backend.
    result = keras_amb_cli(["evaluate", "--model", str(tmp_path / "lambda.keras"),
                            "--dataset", "synthetic"])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "lambda.keras: not a keras-amb model (it holds a Functional)" in result.stderr
    from tests.images import write_good_images

    image = write_good_images(str(tmp_path / "in"))["rgb.jpg"]
    code = f"""
import sys
from keras_amb.cli.main import cli
for name in ("lambda.keras", "junk.keras"):
    model = {str(tmp_path)!r} + "/" + name
    for args in (["evaluate", "--model", model, "--dataset", "synthetic"],
                 ["predict", {image!r}, "--model", model],
                 ["visualize", {image!r}, "--model", model],
                 ["export", "--model", model]):
        try:
            cli.main(args)
        except SystemExit as exit:
            print(args[0], "exit code", exit.code)
print("imported:", sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules))
"""
    # (KERAS_AMB_DEFER_IMPORTS: as the installed `keras-amb` runs, importing
    # keras_amb loads no Keras until a command needs it.)
    done = run_python(code, env={"KERAS_AMB_DEFER_IMPORTS": "1"})
    assert done.stdout.count("exit code 1") == 8, (done.stdout, done.stderr[-3000:])
    assert "imported: []" in done.stdout, done.stdout
    for name, reason in (("lambda.keras", "not a keras-amb model (it holds a Functional)"),
                         ("junk.keras", "not a .keras model file (not a zip archive)")):
        assert done.stderr.count(f"{name}: {reason}") == 4, done.stderr[-3000:]
    assert not marker.exists()


@pytest.mark.slow
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
        from keras_amb import optimizers

        assert isinstance(optimizers.main_optimizer(model.optimizer),
                          keras.optimizers.LossScaleOptimizer)


def _load_every_model_file(run):
    """Loads every model file of a run (safe mode); returns their names."""
    import keras_amb  # noqa: F401  (registers the classes)

    json.load(open(os.path.join(run, "state.json")))
    checkpoints = os.path.join(run, "checkpoints")
    paths = [os.path.join(checkpoints, f) for f in os.listdir(checkpoints)
             if f.endswith(".keras") and not f.startswith(".")] if os.path.isdir(checkpoints) else []
    paths += [os.path.join(run, f) for f in ("abn.keras", "model.keras")
              if os.path.isfile(os.path.join(run, f))]
    for path in paths:
        keras.saving.load_model(path, safe_mode=True)
    return sorted(os.path.relpath(p, run) for p in paths)


def _progress(run):
    try:
        state = json.load(open(os.path.join(run, "state.json")))
    except (OSError, ValueError):
        return None
    return (state["stage_index"], state["completed_epochs"])


def _run_until(args, event, timeout=240):
    """Starts `keras-amb`, SIGKILLs it when `event()` becomes true; returns
    whether it was killed (False: it ended first)."""
    proc = start_keras_amb(args)
    start = time.time()
    killed = False
    while proc.poll() is None and time.time() - start < timeout:
        if event():
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    proc.wait(timeout=120)
    return killed


@pytest.mark.backend_independent("torch")
@pytest.mark.slow
def test_killed_at_any_point_nothing_is_lost(tmp_path):
    """Three SIGKILLs, each on an event the run itself reports, then resume."""
    config = tmp_path / "c.yaml"
    config.write_text(RESUMABLE_CONFIG)
    run = str(tmp_path / "run")
    checkpoints = os.path.join(run, "checkpoints")

    def writing_a_checkpoint():
        return os.path.isdir(checkpoints) and any(
            f.startswith(".tmp-") for f in os.listdir(checkpoints))

    # 1. While the first checkpoint's temporary file is being written.
    assert _run_until(["train", "--config", str(config), "--output", run], writing_a_checkpoint)
    loaded = _load_every_model_file(run)
    # 2. Right after the resumed run completes an epoch.
    before = _progress(run)
    assert _run_until(["train", "--resume", run], lambda: (_progress(run) or before) > before)
    assert len(_load_every_model_file(run)) >= len(loaded)
    # 3. Once the proposed model has finished its first epoch (two remain).
    assert _run_until(["train", "--resume", run],
                      lambda: (_progress(run) or (0, 0)) >= (1, 1))
    assert "abn.keras" in _load_every_model_file(run)
    result = keras_amb_cli(["train", "--resume", run])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(run, "history.csv")) as f:
        epochs = [(r["stage"], int(r["epoch"])) for r in csv.DictReader(f)]
    assert epochs == [("abn", 1), ("abn", 2), ("mining", 1), ("mining", 2), ("mining", 3)]
    assert json.load(open(os.path.join(run, "state.json")))["finished"]
    assert _load_every_model_file(run) == [
        "abn.keras", "checkpoints/abn-best.keras", "checkpoints/abn-last.keras",
        "checkpoints/mining-best.keras", "checkpoints/mining-last.keras", "model.keras"]
    result = keras_amb_cli_here(["train", "--resume", run, "--epochs", "4"])
    assert result.returncode != 0 and "do not combine" in result.stderr


@pytest.mark.backend_independent("jax")
@pytest.mark.slow
def test_one_trainer_per_run_folder(tmp_path):
    config = tmp_path / "c.yaml"
    # Long enough that the first trainer is still running while the others try.
    config.write_text(RESUMABLE_CONFIG.replace("epochs: 3", "epochs: 500"))
    run = str(tmp_path / "run")
    proc = start_keras_amb(["train", "--config", str(config), "--output", run])
    try:
        deadline = time.time() + 120
        while _progress(run) is None and time.time() < deadline:
            time.sleep(0.05)
        assert _progress(run) is not None, "the run never started"
        for args in (["train", "--resume", run],
                     ["train", "--config", str(config), "--output", run]):
            result = keras_amb_cli(args, timeout=120)
            assert result.returncode != 0 and "Traceback" not in result.stderr
            assert f"being trained by process {proc.pid}" in result.stderr, result.stderr[-2000:]
        assert proc.poll() is None, "the first trainer ended: the lock was not under test"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    # The killed trainer's lock does not block the resume: it trains on.
    killed_at = _progress(run)
    resumed = _run_until(["train", "--resume", run],
                         lambda: (_progress(run) or killed_at) > killed_at)
    assert resumed, "the resumed run ended without training another epoch"


def test_nearly_full_disk_is_refused_before_training(tmp_path, monkeypatch):
    import collections
    import shutil

    from keras_amb.app import runs

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(runs.RunError, match="Only 1 MiB free"):
        runs.check_writable(str(tmp_path / "run"))


@pytest.mark.backend_independent("torch")  # the TensorFlow suite is the longest
@pytest.mark.slow
def test_evaluate_on_a_folder_with_awkward_files(tmp_path):
    from tests.images import write_bad_images
    from tests.images import write_good_images
    from tests.images import write_halves_dataset
    from tests.images import write_huge_image

    root = tmp_path / "images"
    write_halves_dataset(root)
    args = ["--backbone", "resnet_tiny", "--image-size", "32", "--weights", "none",
            "--batch-size", "8", "--architecture", "abn", "--epochs", "1"]
    result = keras_amb_cli(["train", "--dataset", str(root), "--output", str(tmp_path / "run")] + args)
    assert result.returncode == 0, result.stderr[-3000:]
    write_good_images(str(root / "left" / "odd"))
    write_huge_image(root / "left" / "huge.jpg", (220, 60, 60))
    bad = write_bad_images(str(root / "right"))
    # In this process: the command's start was under test just above.
    result = keras_amb_cli_here(["evaluate", "--model", str(tmp_path / "run"), "--dataset",
                                 str(root), "--split", "train", "--json"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for path in bad.values():
        assert f"skipped: {path}" in result.stderr
    import json

    data = json.loads(result.stdout.strip().splitlines()[-1])
    # Every readable file of the folder's train split is scored; a folder has
    # no masks to localise against.
    assert data["examples"] >= 9 + 1 + 8 and data["pointing_game"] is None
    assert data["top1"] == pytest.approx(round(data["top1"] * data["examples"]) / data["examples"])


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    # Epoch 1 trains at a sane rate; the schedule then multiplies it by 1e38,
    # so epoch 2 diverges.
    config = tmp_path / "c.yaml"
    config.write_text(RESUMABLE_CONFIG.replace("pretrain_epochs: 2\nepochs: 3\n", "epochs: 2\n")
                      + "architecture: abn\n"
                      + "lr_schedule: {name: step, milestones: [0.5], gamma: 1.0e+38}\n")
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
