import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_amb import AttentionMiningNetwork
from keras_amb.app import runs
from tests.conftest import BACKEND
from tests.conftest import keras_amb_cli
from tests.conftest import run_python

SIZE = 32


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder with a model trained a few steps on this backend."""
    run = str(tmp_path_factory.mktemp("run"))
    keras.utils.set_random_seed(0)
    model = AttentionMiningNetwork(num_classes=4, backbone="resnet_tiny", image_size=SIZE)
    model.compile(keras.optimizers.SGD(0.05))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, SIZE, SIZE, 3)).astype("uint8")
    model.fit(x.astype("float32"), np.arange(16) % 4, batch_size=8, epochs=1, verbose=0)
    model.save(os.path.join(run, "model.keras"))
    runs.atomic_write_text(os.path.join(run, "labels.txt"), "wren\nfinch\ncrow\njay\n")
    runs.atomic_write_text(os.path.join(run, "config.yaml"), "resize_ratio: 1.0\n")
    expected = model.predict(x.astype("float32"), verbose=0)
    np.save(os.path.join(run, "x.npy"), x)
    np.save(os.path.join(run, "probabilities.npy"), expected["probabilities"])
    np.save(os.path.join(run, "attention.npy"), expected["attention"])
    return run


@pytest.mark.skipif(BACKEND != "tensorflow", reason="export runs on TensorFlow (the CLI "
                    "switches to it; its tests run on every backend)")
def test_saved_model_signatures_give_the_models_answers(trained_run, tmp_path):
    import tensorflow as tf

    from keras_amb.app import export

    model = runs.Run.open(trained_run).load_model()
    target = export.export_saved_model(model, str(tmp_path / "serving"))
    assert target.endswith(os.path.join("serving", "1")) and os.listdir(tmp_path / "serving") == ["1"]
    loaded = tf.saved_model.load(target)
    x = np.load(os.path.join(trained_run, "x.npy"))
    out = loaded.signatures["predict_images"](images=tf.constant(x))
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               np.load(os.path.join(trained_run, "probabilities.npy")), atol=1e-4)
    np.testing.assert_allclose(out["attention"].numpy(),
                               np.load(os.path.join(trained_run, "attention.npy")), atol=1e-4)
    names = [n.decode() for n in out["top_k_names"].numpy()[0]]
    assert sorted(names) == ["crow", "finch", "jay", "wren"]
    with pytest.raises(export.ExportError, match="never overwritten"):
        export.export_saved_model(model, str(tmp_path / "serving"), version=1)


VERIFY = r'''
import base64, io, json, sys
import numpy as np, tensorflow as tf
from PIL import Image
from keras_amb.app.export import decode_rest_request
run, export = sys.argv[1], sys.argv[2]
loaded = tf.saved_model.load(export)
x = np.load(run + "/x.npy")
out = loaded.signatures["predict_images"](images=tf.constant(x))
result = {
    "prob_diff": float(np.abs(out["probabilities"].numpy() - np.load(run + "/probabilities.npy")).max()),
    "att_diff": float(np.abs(out["attention"].numpy() - np.load(run + "/attention.npy")).max()),
    "names": [n.decode() for n in out["top_k_names"].numpy()[0]],
    "ids": out["top_k_ids"].numpy()[0].tolist(),
    "scores_sorted": bool(np.all(np.diff(out["top_k_scores"].numpy(), axis=1) <= 0)),
}
# A TF Serving REST body, decoded the way TF Serving does, through serving_default.
encoded = []
for i, fmt in enumerate(["PNG", "BMP", "GIF", "PNG"]):
    buf = io.BytesIO(); Image.fromarray(x[i]).save(buf, format=fmt); encoded.append(buf.getvalue())
body = {"signature_name": "serving_default",
        "instances": [{"image_bytes": {"b64": base64.b64encode(e).decode()}} for e in encoded]}
name, inputs = decode_rest_request(json.loads(json.dumps(body)))
served = loaded.signatures[name](image_bytes=tf.constant(list(inputs["image_bytes"])))
lossless = [0, 1, 3]  # PNG and BMP are lossless; GIF is palettised
result["bytes_prob_diff"] = float(np.abs(served["probabilities"].numpy()[lossless] - np.load(run + "/probabilities.npy")[lossless]).max())
result["bytes_shapes"] = [list(served["attention"].shape), list(served["probabilities"].shape)]
att = served["attention"].numpy()
result["att_range"] = [float(att.min()), float(att.max())]
errors = []
for bad in [b"", b"this is not an image"]:
    try:
        loaded.signatures["serving_default"](image_bytes=tf.constant([bad]))
        errors.append("no error")
    except tf.errors.InvalidArgumentError as e:
        errors.append("InvalidArgumentError")
result["bad_input"] = errors
again = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded[:1]))
result["still_serving"] = list(again["probabilities"].shape)
print(json.dumps(result))
'''


# Once, under JAX: `keras-amb export` switches to TensorFlow, where the
# export always runs (the tests below do the same from torch; the SavedModel
# of a model in this process is tested under TensorFlow above). A model
# trained under any backend is TensorFlow's to load like any other
# (test_model.py's files saved under each backend). Under each backend this
# cost 40-60 s of the suite's time.
@pytest.mark.backend_independent("jax")
@pytest.mark.slow
def test_export_serves_the_models_answers(trained_run, tmp_path):
    out = str(tmp_path / "serving")
    result = keras_amb_cli(["export", "--model", trained_run, "--output", out])
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.isfile(os.path.join(out, "1", "saved_model.pb"))
    assert os.path.isdir(os.path.join(out, "1", "variables"))
    assert [n for n in os.listdir(out)] == ["1"], "no temporary folder left behind"

    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", os.path.join(out, "1")],
                           capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    for needle in ("signature_def['serving_default']", "signature_def['predict_images']",
                   "inputs['image_bytes']", "DT_STRING", "inputs['images']", "DT_UINT8",
                   "outputs['probabilities']", "outputs['top_k_ids']", "DT_INT32",
                   "outputs['top_k_scores']", "outputs['top_k_names']",
                   "outputs['attention']", f"(-1, {SIZE // 4}, {SIZE // 4})"):
        assert needle in text, needle

    check = run_python(VERIFY.replace("sys.argv[1], sys.argv[2]", f"{trained_run!r}, {os.path.join(out, '1')!r}"),
                       backend="tensorflow")
    assert check.returncode == 0, check.stderr[-3000:]
    got = json.loads(check.stdout.strip().splitlines()[-1])
    assert got["prob_diff"] < 1e-4 and got["att_diff"] < 1e-4, got
    assert got["bytes_prob_diff"] < 1e-4, got
    assert set(got["names"]) <= {"wren", "finch", "crow", "jay"} and len(got["names"]) == 4
    assert got["scores_sorted"]
    assert got["bytes_shapes"] == [[4, SIZE // 4, SIZE // 4], [4, 4]]
    assert 0.0 <= got["att_range"][0] and got["att_range"][1] <= 1.0
    assert got["bad_input"] == ["InvalidArgumentError", "InvalidArgumentError"]
    assert got["still_serving"] == [1, 4]


@pytest.mark.backend_independent("torch")  # spreads the suites' time: TensorFlow's is the longest
@pytest.mark.slow
def test_export_never_overwrites_a_version(trained_run, tmp_path):
    out = str(tmp_path / "serving")
    os.makedirs(os.path.join(out, "1"))
    result = keras_amb_cli(["export", "--model", trained_run, "--output", out])
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["1", "2"]
    result = keras_amb_cli(["export", "--model", trained_run, "--output", out, "--serving-version", "2"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "already exists" in result.stderr and "next free: 3" in result.stderr


AWKWARD = r'''
import json, sys
import tensorflow as tf
sys.path.insert(0, REPO)
from tests.images import write_bad_images, write_good_images, write_huge_image
good = write_good_images(TMP + "/good")
good["huge.jpg"] = write_huge_image(TMP + "/good/huge.jpg")
bad = {k: v for k, v in write_bad_images(TMP + "/bad").items() if k != "folder.jpg"}
serve = tf.saved_model.load(EXPORT).signatures["serving_default"]
result = {}
for name, path in list(good.items()) + list(bad.items()):
    try:
        out = serve(image_bytes=tf.constant([open(path, "rb").read()]))
        p = out["probabilities"].numpy()
        result[name] = "ok" if abs(p.sum() - 1) < 1e-4 else "garbage"
    except tf.errors.InvalidArgumentError:
        result[name] = "refused"
print(json.dumps(result))
'''


@pytest.mark.backend_independent("torch")  # spreads the suites' time: TensorFlow's is the longest
@pytest.mark.slow
def test_served_signature_on_awkward_files(trained_run, tmp_path):
    from tests.conftest import REPO

    out = str(tmp_path / "serving")
    result = keras_amb_cli(["export", "--model", trained_run, "--output", out])
    assert result.returncode == 0, result.stderr[-3000:]
    code = (AWKWARD.replace("REPO", repr(REPO)).replace("TMP", repr(str(tmp_path)))
            .replace("EXPORT", repr(os.path.join(out, "1"))))
    check = run_python(code, backend="tensorflow")
    assert check.returncode == 0, check.stderr[-3000:]
    got = json.loads(check.stdout.strip().splitlines()[-1])
    for name in ("rgb.jpg", "cmyk.jpg", "grey.png", "rgba.png", "grey16.png", "palette.bmp",
                 "animated.gif", "photo.webp", "tiny.png", "huge.jpg"):
        assert got[name] == "ok", (name, got)
    for name in ("empty.jpg", "truncated.jpg", "notes.jpg"):
        assert got[name] == "refused", (name, got)


ONNX_CHECK = r'''
import json, sys
import numpy as np, onnxruntime
run, path = sys.argv[1], sys.argv[2]
session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
x = np.load(run + "/x.npy").astype("float32")
names = [o.name for o in session.get_outputs()]
out = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))
print(json.dumps({
    "inputs": [i.name for i in session.get_inputs()], "outputs": sorted(names),
    "prob_diff": float(np.abs(out["probabilities"] - np.load(run + "/probabilities.npy")).max()),
    "att_diff": float(np.abs(out["attention"] - np.load(run + "/attention.npy")).max()),
}))
'''


# The ONNX file is converted from TensorFlow whatever the backend (the command
# switches to it, as the SavedModel export tests check from JAX and torch).
@pytest.mark.backend_independent("torch")
@pytest.mark.slow
def test_onnx_export_gives_the_models_answers(trained_run, tmp_path):
    path = str(tmp_path / "model.onnx")
    result = keras_amb_cli(["export", "--model", trained_run, "--format", "onnx", "--output", path])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FutureWarning" not in result.stderr  # numpy's, shown only with --verbose
    assert os.path.isfile(path) and not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    check = run_python(ONNX_CHECK.replace("sys.argv[1], sys.argv[2]", f"{trained_run!r}, {path!r}"))
    assert check.returncode == 0, check.stderr[-3000:]
    got = json.loads(check.stdout.strip().splitlines()[-1])
    assert got["inputs"] == ["images"] and got["outputs"] == ["attention", "probabilities"]
    assert got["prob_diff"] < 1e-4 and got["att_diff"] < 1e-4, got
