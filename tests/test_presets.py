"""Sharing a trained model as a named preset (#38 §4), offline: a local
preset folder in keras-hub's layout, loaded by Python and by every command."""

import json
import os
import sys

import numpy as np
import pytest

import keras_amb
from keras_amb.errors import RunError
from tests.helpers import tiny_model_file
from tests.test_faults import CLASSES
from tests.test_faults import SIZE
from tests.test_faults import hashes
from tests.test_faults import invoke
from tests.test_faults import one_line_error
from tests.test_faults import write_png


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model_file(tmp_path_factory.mktemp("model"), CLASSES, SIZE, resize_ratio=1.25)


def test_a_preset_saves_and_loads_with_the_same_answers(model_file, tmp_path):
    model = keras_amb.load_model(model_file)
    folder = keras_amb.save_preset(model, str(tmp_path / "birds"))
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "metadata.json",
                                          "model.weights.h5"]
    metadata = json.loads(open(os.path.join(folder, "metadata.json")).read())
    assert metadata["parameter_count"] == model.count_params()
    assert metadata["keras_amb_version"] == keras_amb.__version__
    assert "compile_config" not in json.loads(open(os.path.join(folder, "config.json")).read())
    loaded = keras_amb.load_model(folder)
    assert loaded.get_config() == model.get_config()
    photo = write_png(tmp_path / "photo.png", size=(80, 60))
    [a], [b] = keras_amb.predict(model, photo), keras_amb.predict(loaded, photo)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    with pytest.raises(RunError, match="already exists"):
        keras_amb.save_preset(model, folder)


def test_every_command_takes_a_preset_folder(model_file, tmp_path):
    folder = str(tmp_path / "birds-preset")
    result = invoke("export", "--model", model_file, "--format", "preset", "--output", folder)
    assert result.exit_code == 0, result.output
    before = hashes(folder)
    info = invoke("info", "--model", folder)
    assert info.exit_code == 0 and f"preset          {folder}" in info.output
    assert info.output.splitlines()[0] == "birds-preset"
    photo = write_png(tmp_path / "photo.png")
    predicted = invoke("predict", photo, "--model", folder)
    assert predicted.exit_code == 0
    assert json.loads(predicted.stdout.splitlines()[-1])["top_k"][0]["class"] in CLASSES
    one_line_error(invoke("export", "--model", model_file, "--format", "preset", "--output",
                          folder), folder, "already exists")
    assert hashes(folder) == before


def test_a_hostile_preset_gets_the_model_file_checks(model_file, tmp_path):
    model = keras_amb.load_model(model_file)
    folder = keras_amb.save_preset(model, str(tmp_path / "wide"))
    path = os.path.join(folder, "config.json")
    config = json.loads(open(path).read())
    config["config"]["num_classes"] = 25000
    config["config"]["class_names"] = [f"c{i}" for i in range(25000)]
    open(path, "w").write(json.dumps(config))
    one_line_error(invoke("info", "--model", folder), "KERAS_AMB_MAX_MODEL_BYTES")


def test_a_hub_handle_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(RunError, match=r"hf://someone/birds: loading from a hub needs"):
        keras_amb.load_model("hf://someone/birds")
    with pytest.raises(RunError, match="hf:// or kaggle://"):
        keras_amb.upload_preset("ftp://x", os.path.dirname(__file__))
