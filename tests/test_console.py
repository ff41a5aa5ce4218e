"""The training console (#38 §6): one short line per epoch."""

import numpy as np
import pytest

from keras_amb import AttentionBranchNetwork
from keras_amb.app.console import EpochSummary
from keras_amb.app.console import summary_line


def test_the_epoch_line_shows_what_a_user_watches_and_nothing_else():
    logs = {"loss": 4.98501, "top1": 0.2675, "val_top1": 0.1175, "val_att_top1": 0.15,
            "learning_rate": 0.05, "att_feature_norm": 3.7, "map_grad_pc_loss": 0.05,
            "val_pc_loss": 6.4}
    assert summary_line("mining", 1, 8, logs, 36.2) == (
        "mining epoch 1/8: loss 4.985, top-1 0.268, val top-1 0.117, "
        "val attention top-1 0.150, lr 0.05 (36 s)")
    assert summary_line("abn", 2, 8, {"loss": 1.0}, 0.4) == "abn epoch 2/8: loss 1.000 (0 s)"


@pytest.mark.backend_independent("jax")
def test_fit_with_the_summary_logs_one_line_per_epoch():
    model = AttentionBranchNetwork(num_classes=3, backbone="resnet_tiny", image_size=32)
    model.compile(run_eagerly=True)
    x = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    y = np.arange(6) % 3
    lines = []
    model.fit(x, y, batch_size=3, epochs=2, verbose=0,
              callbacks=[EpochSummary(lines.append, "abn", epochs=2, progress=True)])
    assert [line.split(":")[0] for line in lines] == ["abn epoch 1/2", "abn epoch 2/2"]
    assert all("top-1" in line and "loss" in line and "norm" not in line for line in lines)
