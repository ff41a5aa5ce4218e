"""What a new user meets first: `info` at once, one JSON document, exit codes
that say "nothing to do", exports beside their run."""

import json
import os
import sys

import keras
import pytest

from keras_amb import AttentionMiningNetwork
from keras_amb.app import config as amb_config
from keras_amb.files import atomic_write_text
from keras_amb.app.runs import Run
from tests.conftest import keras_amb_cli
from tests.conftest import keras_amb_cli_here
from tests.conftest import run_python

# Under torch: its suite is the shortest (the TensorFlow and JAX suites set the
# time of the three run at once).
pytestmark = pytest.mark.backend_independent("torch")

CLASSES = ["red_solid_head", "green_solid_head", "blue_solid_head", "yellow_solid_head",
           "magenta_solid_head", "cyan_solid_head", "red_stripes_head", "green_stripes_head"]
CONFIG = """\
dataset: synthetic
synthetic: {num_classes: 8, image_size: 32, train_size: 16, val_size: 8, test_size: 8}
backbone: resnet_tiny
image_size: 32
batch_size: 4
pretrain_epochs: 1
epochs: 1
attention_images: 0
"""
TEST_METRICS = {"loss": 9.6921, "top1": 0.15625, "top5": 0.6875, "att_top1": 0.09375}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as training leaves it (an untrained model: nothing here
    depends on what it predicts)."""
    root = tmp_path_factory.mktemp("first-steps")
    run = root / "synthetic-mining-20261201-201411"
    run.mkdir()
    (root / "tiny.yaml").write_text(CONFIG)
    amb_config.dump(amb_config.resolve(str(root / "tiny.yaml")).to_dict(),
                    str(run / "config.yaml"))
    model = AttentionMiningNetwork(num_classes=8, backbone="resnet_tiny", image_size=32,
                                   class_names=CLASSES)
    model(keras.ops.zeros((1, 32, 32, 3)))
    model.save(str(run / "model.keras"))
    atomic_write_text(str(run / "labels.txt"), "\n".join(CLASSES) + "\n")
    atomic_write_text(str(run / "test_metrics.json"), json.dumps(TEST_METRICS))
    atomic_write_text(str(run / "state.json"), json.dumps({"stage": "proposed",
                                                           "finished": True}))
    return {"run": str(run), "parameters": model.count_params()}


def test_info_imports_neither_keras_nor_tensorflow(run):
    exe = os.path.join(os.path.dirname(sys.executable), "keras-amb")
    # The installed command as its console script runs it, then what it imported.
    code = f"""
import runpy, sys
sys.argv = [{exe!r}, "info", {run["run"]!r}]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    print("exit code", exit.code)
print("imported:", sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules))
"""
    result = run_python(code)
    assert "exit code 0" in result.stdout, result.stderr[-2000:]
    assert "imported: []" in result.stdout, result.stdout
    out = result.stdout
    assert "AttentionMiningNetwork: AMB (attention only) + PC + COT + area, no bypass" in out
    assert f"parameters      {run['parameters']:,}" in out
    assert f"Keras {keras.__version__}" in out
    # The test metrics, and every class name (wrapped over lines).
    assert "top1 0.1562, top5 0.6875, att_top1 0.0938, loss 9.6921 (test_metrics.json)" in (
        " ".join(out.split()))
    for name in CLASSES:
        assert name in out, name
    assert "..." not in out


def test_info_lists_the_classes_and_reports_a_bad_file_in_a_line(run, tmp_path):
    result = keras_amb_cli(["info", run["run"], "--classes"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == CLASSES
    bad = tmp_path / "model.keras"
    bad.write_text("not a zip")
    result = keras_amb_cli(["info", str(bad)])
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {bad}: not a .keras model file (not a zip archive)"


def test_nothing_to_do_exits_2_naming_the_folder(run, tmp_path):
    empty = tmp_path / "photos"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    for command in ("visualize", "predict"):
        result = keras_amb_cli([command, str(empty), "--model", run["run"]])
        assert result.returncode == 2, (command, result.stderr[-2000:])
        # Click's usage lines and the error: no traceback, no TensorFlow start-up lines.
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[-1] == (f"Error: no image files in {empty} (looked for JPEG, PNG, BMP, "
                             "GIF and WebP)") and len(lines) == 3, (command, result.stderr)
        assert not result.stdout, command
    assert not os.path.exists(os.path.join(run["run"], "visualize"))
    # Said before TensorFlow loads (a second, not TensorFlow's 5-10 s of imports).
    code = f"""
import sys
from keras_amb.cli.main import cli
for command in ("visualize", "predict"):
    try:
        cli.main([command, {str(empty)!r}, "--model", {run["run"]!r}])
    except SystemExit as exit:
        print(command, "exit code", exit.code)
print("imported:", sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules))
"""
    done = run_python(code, env={"KERAS_AMB_DEFER_IMPORTS": "1"})
    assert done.stdout.count("exit code 2") == 2, (done.stdout, done.stderr[-2000:])
    assert "imported: []" in done.stdout, done.stdout


def test_train_checks_its_config_before_tensorflow_loads(tmp_path):
    """A bad value and --print-config answer from the config alone (a
    fraction of a second, not TensorFlow's 5-10 s of imports)."""
    code = f"""
import sys
from keras_amb.cli.main import cli
for args in (["--epochs", "0"], ["--set", "optimizer.name=rmsprop"],
             ["--config", "synthetic_v2", "--lr", "0.2", "--print-config"]):
    try:
        cli.main(["train", *args, "--output", {str(tmp_path / "run")!r}])
    except SystemExit as exit:
        print("exit code", exit.code)
print("imported:", sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules))
"""
    done = run_python(code, env={"KERAS_AMB_DEFER_IMPORTS": "1"})
    # Both are usage mistakes: exit code 2 (`keras-amb --help`, "Exit codes").
    assert done.stdout.count("exit code 2") == 2 and "exit code 0" in done.stdout, (
        done.stdout, done.stderr[-2000:])
    assert "--epochs must be a positive integer, got 0" in done.stderr
    assert "--set optimizer.name must be one of ('sgd', 'adam', 'adamw'), got 'rmsprop'" in (
        done.stderr)
    assert "  learning_rate: 0.2" in done.stdout and "version: '2'" in done.stdout, done.stdout
    assert "imported: []" in done.stdout, done.stdout
    assert not (tmp_path / "run").exists()


def test_evaluate_all_methods_json_is_one_object_and_progress_is_on_stderr(run, tmp_path):
    args = ["evaluate", "--model", run["run"], "--limit", "4", "--batch-size", "4",
            "--thresholds", "3", "--rise-steps", "2", "--output", str(tmp_path)]
    result = keras_amb_cli(args + ["--method", "all", "--json"])
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout)
    assert sorted(scores) == ["attention", "cam", "gradcam"]
    for method, summary in scores.items():
        assert summary["method"] == method and summary["examples"] == 4, method
        assert summary["score"] == pytest.approx(summary["insertion"] - summary["deletion"])
        # Each method's scores are those its own results file holds.
        with open(tmp_path / f"test-{method}.json") as f:
            saved = json.load(f)
        assert summary["params"] == saved["params"] and summary["rise_insertion"] == (
            saved["rise_insertion"]), method
    assert result.stderr.count("/image") == 1  # one pass over the split for every method
    result = keras_amb_cli_here(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "/image" in result.stderr and "/image" not in result.stdout
    assert result.stdout.lstrip().startswith("synthetic-mining-20261201-201411 on synthetic")


def test_export_goes_beside_the_run(run, tmp_path):
    import keras_amb.cli.main  # noqa: F401  (first: it registers the commands)
    from keras_amb.cli.export import default_output

    parent = os.path.dirname(run["run"])
    name = os.path.basename(run["run"])
    assert default_output(Run.open(run["run"]), "savedmodel") == os.path.join(
        parent, f"{name}-serving")
    assert default_output(Run.open(run["run"] + "/"), "onnx") == os.path.join(
        parent, f"{name}.onnx")
    assert default_output(Run.open(os.path.join(run["run"], "model.keras")), "onnx") == (
        os.path.join(parent, f"{name}.onnx"))
    bare = tmp_path / "elsewhere" / "copy.keras"
    bare.parent.mkdir()
    bare.write_bytes(open(os.path.join(run["run"], "model.keras"), "rb").read())
    assert default_output(Run.open(str(bare)), "savedmodel") == str(
        tmp_path / "elsewhere" / "copy-serving")


def test_tensorflow_runs_its_onednn_kernels_unless_told_otherwise():
    """TensorFlow turns oneDNN on by default only on AVX512_VNNI/BF16/AMX
    CPUs; on AVX2 CPUs its Eigen kernels trained the small models at half the
    speed (benchmarks/results/cpu_2core_avx2_peer_tiny.md). Importing
    keras_amb first turns it on, and a user's own setting wins."""
    import subprocess

    code = ("import os, keras_amb, tensorflow as tf; tf.constant(1.0);"
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'])")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="0")
    for setting, expected in ((None, "1"), ("0", "0")):
        if setting is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = setting
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split()[-1] == expected
        # TensorFlow's own word, logged when it loads.
        assert ("oneDNN custom operations are on" in done.stderr) == (expected == "1"), (
            done.stderr[-2000:])


def test_importing_keras_first_warns_where_the_fast_kernels_stay_off():
    """#38: `import keras` before `import keras_amb` is the natural order; on
    a CPU where TensorFlow's oneDNN kernels are off by default, keras_amb can
    no longer turn them on, and says so once, naming the setting and the cost."""
    import keras_amb

    avx2 = {"avx2", "fma", "sse4_2"}
    message = keras_amb._late_onednn_warning(True, None, avx2)
    assert "TF_ENABLE_ONEDNN_OPTS=1" in message and "half the speed" in message
    assert keras_amb._late_onednn_warning(True, None, avx2 | {"avx512_vnni"}) is None
    assert keras_amb._late_onednn_warning(True, "0", avx2) is None  # the user chose
    assert keras_amb._late_onednn_warning(False, None, avx2) is None  # keras_amb first
    assert keras_amb._late_onednn_warning(True, None, None) is None  # flags unknown
    # keras_amb first: no warning, whatever the CPU.
    done = run_python("import warnings; warnings.simplefilter('error', RuntimeWarning)\n"
                      "import keras_amb, keras\nprint('ok')",
                      env={"TF_ENABLE_ONEDNN_OPTS": ""})
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
