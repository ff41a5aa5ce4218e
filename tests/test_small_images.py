import json
import os
import re

import pytest
import yaml

from tests.conftest import keras_amb_cli
from tests.images import write_digits_dataset


# Under the default backend, as the README runs it: it took 131 s under
# JAX, the suite's slowest backend, when it ran there to spread the time.
@pytest.mark.backend_independent
@pytest.mark.slow
def test_small_images_config_learns_real_digits(tmp_path):
    """The README's command for small images, on a real folder of 32x32
    digits (10 classes, about 1,400 training images): at least 95% top-1."""
    root = write_digits_dataset(str(tmp_path / "digits"))
    run = str(tmp_path / "run")
    result = keras_amb_cli(["train", "--dataset", root, "--config", "small_images",
                            "--output", run])
    assert result.returncode == 0, result.stderr[-3000:]
    train_size = int(re.search(r"\(10 classes, (\d+) train", result.stdout).group(1))
    assert 1350 <= train_size <= 1500, train_size
    config = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    assert config["flip"] is False and config["image_size"] == 32
    metrics = json.load(open(os.path.join(run, "test_metrics.json")))
    assert metrics["top1"] >= 0.95, metrics
