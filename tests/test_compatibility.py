"""Files saved by an earlier keras-amb still load, predict the same and resume.

The fixture `tests/fixtures/run_2026_12/` was written by
`tests/fixtures/make_fixtures.py` under TensorFlow with keras-amb as it was
on 2026-12-03: a run of the proposed model killed after epoch 1 of 2 of its
second stage. It is never regenerated; a change that breaks these tests
breaks every user's saved runs.
"""

import csv
import json
import os
import shutil

import keras
import numpy as np
import pytest

from keras_amb import runs
from keras_amb import trainer

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "run_2026_12")


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURE, "expected.npz")) as data:
        return {key: data[key] for key in data.files}


def test_old_checkpoint_loads_in_safe_mode_and_predicts_the_same(expected):
    model = keras.saving.load_model(
        os.path.join(FIXTURE, "checkpoints", "proposed-last.keras"), safe_mode=True)
    assert type(model).__name__ == "AttentionMiningNetwork"
    assert (model.amb, model.pc, model.cot, model.bypass) == (True, True, True, False)
    outputs = model.predict(expected["images"], verbose=0)
    # Saved under TensorFlow; other backends sum in another order.
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"],
                               atol=1e-4)
    np.testing.assert_allclose(outputs["attention"], expected["attention"], atol=1e-4)
    # Not a model that gives every image the same answer.
    assert np.ptp(expected["probabilities"][:, 0]) > 1e-3


def test_old_abn_file_loads_and_its_weights_transfer(expected):
    abn = runs.load_model(os.path.join(FIXTURE, "abn.keras"))
    assert abn.bypass and not abn.amb
    proposed = runs.load_model(os.path.join(FIXTURE, "checkpoints", "proposed-last.keras"))
    before = proposed.predict(expected["images"], verbose=0)["probabilities"]
    proposed.transfer_weights_from(abn)
    after = proposed.predict(expected["images"], verbose=0)["probabilities"]
    assert np.abs(after - before).max() > 1e-4


@pytest.mark.slow  # trains the run's last epoch (29 s under JAX)
def test_old_run_folder_resumes_to_the_end(tmp_path, monkeypatch):
    run_dir = str(tmp_path / "run")
    shutil.copytree(FIXTURE, run_dir)
    reads = []

    def counting_open(file, mode="r", *args, **kwargs):
        if os.path.basename(str(file)) == runs.STATE_FILE and mode == "r":
            reads.append(file)
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(runs, "open", counting_open, raising=False)
    result = trainer.resume(run_dir, log=lambda line: None, verbose=0)
    monkeypatch.undo()
    # state.json is parsed once; the run's own writes keep it current (it
    # was read 9 times for this one-epoch resume before).
    assert len(reads) == 1, reads
    assert os.path.isfile(result.model_path)
    state = json.load(open(os.path.join(run_dir, "state.json")))
    assert state["finished"] is True
    with open(os.path.join(run_dir, "history.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    # The two rows written before the kill are kept; the resumed epoch adds one.
    assert [(row["stage"], row["epoch"]) for row in rows] == [
        ("abn", "1"), ("proposed", "1"), ("proposed", "2")]
    assert np.isfinite(float(rows[-1]["loss"]))
    assert 0.0 <= result.test_metrics["top1"] <= 1.0
    # The resumed model continued from the old checkpoint, not from scratch:
    # one more epoch moved its weights less than a fresh initialisation is
    # away from them.
    old = runs.load_model(os.path.join(FIXTURE, "checkpoints", "proposed-last.keras"))
    new = runs.load_model(result.model_path)
    fresh = type(old).from_config(old.get_config())

    def distance(a, b):
        return sum(float(np.sum((keras.ops.convert_to_numpy(x) - keras.ops.convert_to_numpy(y))
                                ** 2)) for x, y in zip(a.weights, b.weights)) ** 0.5

    moved, from_scratch = distance(old, new), distance(old, fresh)
    assert 0 < moved < 0.5 * from_scratch, (moved, from_scratch)

