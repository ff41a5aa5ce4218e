import json

import pytest

from tests.conftest import BACKEND
from tests.conftest import keras_amb_cli
from tests.conftest import run_python

pytestmark = pytest.mark.slow

# Trains the proposed model (AMB + PC + COT) 3 steps, with and without
# data parallelism over two CPU devices, from the same initial weights.
SCRIPT = r'''
import json, os, sys
import numpy as np
distributed = sys.argv[1] == "dp"
backend = os.environ["KERAS_BACKEND"]
if backend == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_amb
import contextlib
scope = contextlib.nullcontext()
if distributed and backend == "tensorflow":
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    scope = strategy.scope()
    replicas = strategy.num_replicas_in_sync
elif distributed:
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    replicas = len(devices)
else:
    replicas = 1
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (48, 32, 32, 3)).astype("float32")
y = (np.arange(48) % 4).astype("int32")
with scope:
    keras.utils.set_random_seed(0)
    model = keras_amb.AttentionMiningNetwork(num_classes=4, backbone="resnet_tiny", image_size=32)
    model.load_weights(sys.argv[2]) if os.path.exists(sys.argv[2]) else model.save_weights(sys.argv[2])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9))
losses = []
class Record(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        losses.append(float(logs["per_loss"]))
model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[Record()])
its = [int(keras.ops.convert_to_numpy(o.iterations)) for o in (model.main_optimizer, model.complement_optimizer)]
print(json.dumps({"replicas": replicas, "losses": losses, "iterations": its}))
'''


@pytest.mark.skipif(BACKEND == "torch", reason="--distribute uses TensorFlow strategies or JAX DataParallel")
def test_two_devices_follow_the_one_device_trajectory(tmp_path):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    weights = str(tmp_path / "init.weights.h5")
    results = {}
    for mode in ("single", "dp"):
        out = run_python(SCRIPT.replace("sys.argv[1]", repr(mode)).replace("sys.argv[2]", repr(weights)),
                         env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    assert results["dp"]["replicas"] == 2 and results["single"]["replicas"] == 1
    assert results["dp"]["iterations"] == results["single"]["iterations"] == [3, 3]
    single, dp = results["single"]["losses"], results["dp"]["losses"]
    # JAX shards the global batch (batch statistics over all of it): the same
    # numbers. TensorFlow's replicas normalise their own halves of the batch.
    tolerance = 1e-3 if BACKEND == "jax" else 0.1
    assert dp == pytest.approx(single, rel=tolerance), (single, dp)


@pytest.mark.skipif(BACKEND == "torch", reason="--distribute uses TensorFlow strategies or JAX DataParallel")
def test_train_cli_distribute(tiny_config, tmp_path):
    result = keras_amb_cli(["train", "--config", tiny_config, "--distribute",
                            "--output", str(tmp_path / "run")],
                           env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Data-parallel on" in result.stdout
    assert (tmp_path / "run" / "model.keras").is_file()


@pytest.mark.skipif(BACKEND != "torch", reason="torch refuses --distribute")
def test_train_cli_distribute_refused_on_torch(tiny_config, tmp_path):
    result = keras_amb_cli(["train", "--config", tiny_config, "--distribute",
                            "--output", str(tmp_path / "run")])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "torch backend is not supported" in result.stderr
