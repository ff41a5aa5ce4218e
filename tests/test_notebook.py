"""The example notebook (`examples/python.ipynb`, #38 §3) runs end to end on
a tiny model, in a fresh Jupyter kernel, as a user would run it."""

import os

import keras
import numpy as np
import pytest

from keras_amb import AttentionMiningNetwork
from tests.conftest import BACKEND
from tests.conftest import REPO

pytestmark = pytest.mark.backend_independent("torch")


def test_the_example_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = str(tmp_path / "tiny.keras")
    keras.utils.set_random_seed(0)
    model = AttentionMiningNetwork(num_classes=8, backbone="resnet_tiny", image_size=32,
                                   class_names=[f"class_{i}" for i in range(8)])
    model(np.zeros((1, 32, 32, 3), np.float32))
    model.save(path)
    monkeypatch.setenv("KERAS_AMB_EXAMPLE_RUN", path)
    monkeypatch.setenv("KERAS_BACKEND", BACKEND)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline figures
    with open(os.path.join(REPO, "examples", "python.ipynb"), encoding="utf-8") as f:
        notebook = nbformat.read(f, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.get("outputs", []))
    assert "class_" in printed and "attention map (" in printed, printed
    figures = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    assert len(figures) == 1  # the map beside CAM and Grad-CAM, drawn
