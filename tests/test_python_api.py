"""Python in three lines (#38 §3): `load_model`, then `predict` on raw
images of any size, preprocessed as the model was trained and as every
command does."""

import json

import numpy as np
import pytest

import keras_amb
from tests.helpers import tiny_model_file
from tests.test_faults import CLASSES
from tests.test_faults import SIZE
from tests.test_faults import invoke
from tests.test_faults import write_png


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model_file(tmp_path_factory.mktemp("model"), CLASSES, SIZE, resize_ratio=1.25)


def test_three_lines_give_what_the_command_line_gives(model_file, tmp_path):
    photo = write_png(tmp_path / "photo.png", size=(320, 240))
    model = keras_amb.load_model(model_file)
    [p] = keras_amb.predict(model, photo)
    result = invoke("predict", photo, "--model", model_file, "--top-k", "4")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert p.label == record["top_k"][0]["class"]
    for (name, score), entry in zip(p.top_k, record["top_k"]):
        assert name == entry["class"] and score == pytest.approx(entry["score"], abs=1e-5)
    assert p.probabilities.shape == (4,) and p.probabilities.sum() == pytest.approx(1, abs=1e-5)
    assert p.attention.ndim == 2 and p.attention.min() >= 0 and p.attention.max() <= 1


def test_arrays_of_any_size_and_unreadable_items(model_file, tmp_path):
    from PIL import Image

    model = keras_amb.load_model(model_file)
    photo = write_png(tmp_path / "photo.png", size=(320, 240))
    array = np.asarray(Image.open(photo).convert("RGB"))
    from_file, from_array, missing, flat = keras_amb.predict(
        model, [photo, array, str(tmp_path / "none.png"), np.zeros((5, 5))])
    np.testing.assert_allclose(from_file.probabilities, from_array.probabilities, atol=1e-5)
    assert from_array.path == "<array 1>" and from_array.original_shape == (240, 320)
    assert "none.png" in missing.error and missing.label is None
    assert "(height, width, 3)" in flat.error
    # The trap it avoids: the raw image straight into model.predict is not
    # what the model was trained on, and answers differently.
    raw = model.predict(array[None].astype("float32"), verbose=0)["probabilities"][0]
    assert not np.allclose(raw, from_array.probabilities, atol=1e-4)


def test_explain_gives_the_class_probabilities_and_maps(model_file, tmp_path):
    from keras_amb.explain import maps
    from keras_amb.inference import preprocess

    model = keras_amb.load_model(model_file)
    photo = write_png(tmp_path / "photo.png", size=(320, 240))
    [explained] = model.explain(photo)
    [predicted] = keras_amb.predict(model, photo)
    assert explained.label == predicted.label
    np.testing.assert_allclose(explained.probabilities, predicted.probabilities, atol=1e-5)
    assert sorted(explained.maps) == ["attention", "cam", "gradcam"]
    np.testing.assert_allclose(explained.maps["attention"], predicted.attention, atol=1e-5)
    # CAM and Grad-CAM of the predicted class on the model's own crop,
    # min-max normalised.
    x = preprocess(keras_amb.data.read_image(photo), model.image_size, model.resize_ratio)[None]
    _, expected = maps.explain(model, x, ("cam", "gradcam"))
    for method in ("cam", "gradcam"):
        got = explained.maps[method]
        np.testing.assert_allclose(got, expected[method][0], atol=1e-5)
        assert got.max() == pytest.approx(1.0) or got.max() == 0
    [only] = model.explain(photo, methods=["cam"])
    assert list(only.maps) == ["cam"]
    with pytest.raises(ValueError, match="'lime'"):
        model.explain(photo, methods=["lime"])
