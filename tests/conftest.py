import atexit
import os
import shutil
import subprocess
import sys
import tempfile

# Under JAX, XLA programs compiled by one test, and by each `keras-amb`
# process a test starts, are cached on disk for the rest of the session (the
# CLI tests build the same tiny models again and again: a tiny training run
# goes from ~30 s to ~11 s). The results are the same; only compiling is saved.
if os.environ.get("KERAS_BACKEND") == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="keras-amb-tests-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Tests marked `backend_independent` exercise what no backend changes (the
# command line's options and messages, run folders, file handling, tf.data,
# the TensorFlow-only export, the ablation's bookkeeping): they run once,
# under the default backend or the one the marker names (the longest ones are
# spread over the backends so that the three suites, run at once, end
# together), and are reported as skipped under the others.
ONE_BACKEND = "tensorflow"


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("backend_independent")
        if marker is None:
            continue
        runs_under = marker.args[0] if marker.args else ONE_BACKEND
        if BACKEND != runs_under:
            item.add_marker(pytest.mark.skip(
                reason=f"backend-independent: runs once, under {runs_under}"))


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def run_python(code, backend=BACKEND, timeout=300, env=None):
    """Runs Python code in a fresh process with the given Keras backend."""
    full_env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        timeout=timeout, env=full_env, cwd=REPO,
    )


def keras_amb_cli(args, timeout=600, env=None, **kwargs):
    """Runs the installed `keras-amb` command."""
    full_env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    full_env.update(env or {})
    exe = os.path.join(os.path.dirname(sys.executable), "keras-amb")
    return subprocess.run(
        [exe] + list(args), capture_output=True, text=True, timeout=timeout,
        env=full_env, **kwargs,
    )


def keras_amb_cli_here(args):
    """`keras-amb ARGS` in this process (click's CliRunner), for calls whose
    output is under test and not the process's start: what only a fresh
    process shows (choosing the backend, deferring imports, TensorFlow's log
    lines kept off the output) stays with `keras_amb_cli`, which every such
    test calls first. A fresh process costs 6-10 s of imports on the 2-core
    CPU. Returns what `keras_amb_cli` returns (returncode, stdout, stderr);
    an exception the command does not turn into a message propagates."""
    from click.testing import CliRunner

    from keras_amb.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


RESUMABLE_CONFIG = """\
synthetic: {num_classes: 4, image_size: 32, train_size: 48, val_size: 16, test_size: 16}
backbone: resnet_tiny
image_size: 32
batch_size: 16
pretrain_epochs: 2
epochs: 3
attention_images: 0
"""


def start_keras_amb(args):
    """Starts the installed `keras-amb` in the background (output discarded)."""
    exe = os.path.join(os.path.dirname(sys.executable), "keras-amb")
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([exe] + list(args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)


TINY_CONFIG = """\
dataset: synthetic
synthetic: {num_classes: 4, image_size: 32, train_size: 64, val_size: 32, test_size: 32}
backbone: resnet_tiny
image_size: 32
batch_size: 16
pretrain_epochs: 1
epochs: 1
attention_images: 2
"""


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return str(path)
