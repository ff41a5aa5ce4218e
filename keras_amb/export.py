"""TensorFlow SavedModel export for TF Serving (TensorFlow backend only).

Signatures:
- `serving_default`: `image_bytes` (batch of encoded JPEG/PNG/BMP/GIF
  strings; TF Serving's REST API turns `{"b64": ...}` into these because the
  input name ends in `_bytes`), decoded, resized and centre-cropped in the
  graph exactly as `keras-amb visualize` and evaluation do.
- `predict_images`: `images`, uint8 `(N, S, S, 3)` already at the input size.
Both return `probabilities` (N, K), `top_k_ids`, `top_k_scores`,
`top_k_names` (N, k) and `attention` (N, h, w) in [0, 1].
"""

import base64
import os

from keras_amb.files import atomic_write_directory


class ExportError(ValueError):
    """An export that cannot be written; the message says why."""


def next_version(root):
    """The next free version number under a TF Serving model folder."""
    if not os.path.isdir(root):
        return 1
    versions = [int(n) for n in os.listdir(root) if n.isdigit()]
    return max(versions, default=0) + 1


def serving_module(model, top_k=5):
    """A `tf.Module` with the two serving functions around a Keras model
    (its class names and resize ratio come from the model's config)."""
    import keras
    import tensorflow as tf

    from keras_amb.data.pipeline import center_crop

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            "Export needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
            f"this process uses {keras.backend.backend()!r}. `keras-amb export` "
            "switches by itself."
        )
    size = int(model.image_size)
    resize_ratio = float(model.resize_ratio)
    k = min(int(top_k), model.num_classes)
    names = tf.constant(model.get_class_names(), dtype=tf.string)

    def outputs(images):
        out = model(images, training=False)
        probabilities = tf.cast(out["probabilities"], tf.float32)
        scores, ids = tf.math.top_k(probabilities, k=k)
        return {
            "probabilities": probabilities,
            "top_k_ids": ids,
            "top_k_scores": scores,
            "top_k_names": tf.gather(names, ids),
            "attention": tf.cast(out["attention"], tf.float32),
        }

    def decode(data):
        tf.debugging.assert_greater(
            tf.strings.length(data), 0, message="image_bytes: empty string, not an image"
        )
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        image.set_shape([None, None, 3])
        return center_crop(tf.cast(image, tf.float32), size, resize_ratio)

    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        images = tf.map_fn(
            decode, image_bytes,
            fn_output_signature=tf.TensorSpec((size, size, 3), tf.float32),
        )
        return outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")])
    def serve_images(images):
        return outputs(tf.cast(images, tf.float32))

    module.serve_bytes = serve_bytes
    module.serve_images = serve_images
    return module


def export_saved_model(model, root, version=None):
    """Writes `root/<version>/` (TF Serving's layout) atomically.

    Returns the version folder. Never overwrites a version: the default is the
    next free number; the SavedModel is written to a hidden temporary folder
    and renamed into place, so a server watching `root` never loads half a
    version.
    """
    import tensorflow as tf

    if version is None:
        version = next_version(root)
    if int(version) < 1:
        raise ExportError(f"--version must be >= 1, got {version}")
    target = os.path.join(root, str(int(version)))
    if os.path.exists(target):
        raise ExportError(
            f"{target} already exists; versions are never overwritten "
            f"(next free: {next_version(root)})"
        )
    module = serving_module(model)
    atomic_write_directory(target, lambda tmp: tf.saved_model.save(
        module, tmp,
        signatures={
            "serving_default": module.serve_bytes.get_concrete_function(),
            "predict_images": module.serve_images.get_concrete_function(),
        },
    ))
    return target


def decode_rest_request(body):
    """Inputs of a TF Serving REST `:predict` body, decoded as TF Serving does.

    Row format (`"instances"`: a list of objects or values) and columnar
    format (`"inputs"`); `{"b64": "..."}` becomes the decoded bytes. Returns
    `(signature_name, {input_name: numpy array})`.
    """
    import numpy as np

    def value(v):
        if isinstance(v, dict) and set(v) == {"b64"}:
            return base64.b64decode(v["b64"])
        if isinstance(v, list):
            return [value(x) for x in v]
        return v

    signature = body.get("signature_name", "serving_default")
    if "instances" in body:
        rows = body["instances"]
        if rows and isinstance(rows[0], dict):
            keys = rows[0].keys()
            inputs = {k: [value(r[k]) for r in rows] for k in keys}
        else:
            inputs = {None: [value(r) for r in rows]}
    elif "inputs" in body:
        columns = body["inputs"]
        inputs = (
            {k: value(v) for k, v in columns.items()}
            if isinstance(columns, dict) else {None: value(columns)}
        )
    else:
        raise ValueError('a REST predict body needs "instances" or "inputs"')
    out = {}
    for k, v in inputs.items():
        array = np.array(v, dtype=object if v and isinstance(v[0], bytes) else None)
        out[k] = array
    return signature, out


def export_onnx(model, path):
    """Writes the model as one ONNX file (atomically); returns its path.

    Input `images`: float32 `(N, S, S, 3)` RGB pixels in `[0, 255]` at the
    model's input size (resize and crop as `keras_amb.inference.preprocess`
    does); outputs `probabilities` `(N, K)` and `attention` `(N, h, w)`.
    Needs the TensorFlow backend and `tf2onnx` (`pip install keras-amb[onnx]`).
    """
    import keras
    import numpy as np

    from keras_amb.files import atomic_write

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            "ONNX export runs on the TensorFlow backend (KERAS_BACKEND=tensorflow); "
            f"this process uses {keras.backend.backend()!r}"
        )
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        raise ExportError(
            "ONNX export needs tf2onnx: pip install 'keras-amb[onnx]'"
        ) from None
    if os.path.isdir(path):
        raise ExportError(f"{path} is a folder; give the .onnx file to write")
    size = int(model.image_size)
    inputs = keras.Input((size, size, 3), name="images")
    outputs = model(inputs)
    wrapper = keras.Model(
        inputs,
        {"probabilities": outputs["probabilities"], "attention": outputs["attention"]},
        name=f"{model.name}_onnx",
    )
    wrapper(np.zeros((1, size, size, 3), np.float32))
    atomic_write(path, lambda tmp: wrapper.export(tmp, format="onnx", verbose=False),
                 suffix=".onnx")
    return path
