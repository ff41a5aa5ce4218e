"""TensorFlow SavedModel export for TF Serving (TensorFlow backend only).

Signatures:
- `serving_default`: `image_bytes` (batch of encoded JPEG/PNG/BMP/GIF
  strings; TF Serving's REST API turns `{"b64": ...}` into these because the
  input name ends in `_bytes`), decoded, resized and center-cropped in the
  graph exactly as `keras-amb visualize` and evaluation do.
- `predict_images`: `images`, uint8 `(N, S, S, 3)` already at the input size.
Both return `probabilities` (N, K), `top_k_ids`, `top_k_scores`,
`top_k_names` (N, k) and `attention` (N, h, w) in [0, 1].

The serving graph (`serving_module`) and its guard against hostile images
(`header_size`: the image size read from each format's header before
anything is decoded) sit together; the ONNX export shares their input
contract.
"""

import base64
import os

from keras_amb.errors import ExportError  # noqa: F401 (re-exported)
from keras_amb.files import atomic_write_directory


def next_version(root):
    """The next free version number under a TF Serving model folder."""
    if not os.path.isdir(root):
        return 1
    versions = [int(n) for n in os.listdir(root) if n.isdigit()]
    return max(versions, default=0) + 1


def header_size(data):
    """`(width, height, frames)` of an encoded image, read from its header
    without decoding it (a graph function: `data` is a scalar string tensor).

    JPEG (`tf.image.extract_jpeg_shape`), PNG (IHDR), BMP, GIF (logical
    screen; `frames` is an upper bound on the frames TensorFlow's decoder
    returns, all of which it decodes) and still WebP. Any other content, an
    animated WebP or a truncated header gives `(-1, -1, 1)`.
    """
    import tensorflow as tf

    head = tf.io.decode_raw(tf.strings.substr(data, 0, 32, unit="BYTE"), tf.uint8)
    head = tf.cast(tf.pad(head, [[0, 32 - tf.shape(head)[0]]]), tf.int64)

    def le(i, n):
        return sum(head[i + k] * (256 ** k) for k in range(n))

    def be(i, n):
        return sum(head[i + k] * (256 ** (n - 1 - k)) for k in range(n))

    def starts(magic):
        return tf.equal(tf.strings.substr(data, 0, len(magic), unit="BYTE"), magic)

    one = tf.constant(1, tf.int64)
    unknown = (tf.constant(-1, tf.int64), tf.constant(-1, tf.int64), one)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[1], shape[0], one

    def png():
        return be(16, 4), be(20, 4), one

    def bmp():
        height = le(22, 4)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down BMPs
        return le(18, 4), height, one

    def gif():
        # Every frame but the first block's starts with an image separator
        # (0x2C) right after the 0x00 that ends the block before it, so
        # 1 + the count of "00 2C" pairs bounds the frames from above.
        raw = tf.io.decode_raw(data, tf.uint8)
        pairs = tf.logical_and(tf.equal(raw[:-1], 0), tf.equal(raw[1:], 0x2C))
        frames = 1 + tf.reduce_sum(tf.cast(pairs, tf.int64))
        return le(6, 2), le(8, 2), frames

    def webp():
        chunk = tf.strings.substr(data, 12, 4, unit="BYTE")
        lossy = (tf.bitwise.bitwise_and(le(26, 2), 0x3FFF),
                 tf.bitwise.bitwise_and(le(28, 2), 0x3FFF), one)
        b1, b2, b3 = head[22], head[23], head[24]
        lossless = (
            1 + tf.bitwise.bitwise_or(tf.bitwise.left_shift(tf.bitwise.bitwise_and(b1, 0x3F), 8),
                                      head[21]),
            1 + (tf.bitwise.left_shift(tf.bitwise.bitwise_and(b3, 0xF), 10)
                 + tf.bitwise.left_shift(b2, 2)
                 + tf.bitwise.right_shift(tf.bitwise.bitwise_and(b1, 0xC0), 6)),
            one,
        )
        animated = tf.not_equal(tf.bitwise.bitwise_and(head[20], 0x02), 0)
        extended = tf.cond(animated, lambda: unknown,
                           lambda: (1 + le(24, 3), 1 + le(27, 3), one))
        return tf.case([(tf.equal(chunk, "VP8 "), lambda: lossy),
                        (tf.equal(chunk, "VP8L"), lambda: lossless),
                        (tf.equal(chunk, "VP8X"), lambda: extended)],
                       default=lambda: unknown, exclusive=True)

    is_webp = tf.logical_and(starts(b"RIFF"), tf.equal(
        tf.strings.substr(data, 8, 4, unit="BYTE"), b"WEBP"))
    return tf.case(
        [(starts(b"\xff\xd8\xff"), jpeg), (starts(b"\x89PNG\r\n\x1a\n"), png),
         (starts(b"BM"), bmp), (starts(b"GIF8"), gif), (is_webp, webp)],
        default=lambda: unknown,
    )


def serving_module(model, top_k=5, max_pixels=None, max_aspect_ratio=None):
    """A `tf.Module` with the two serving functions around a Keras model
    (its class names and resize ratio come from the model's config).

    `serving_default` reads each image's size from its header before
    decoding it and refuses (an `InvalidArgumentError` for that request)
    one over `max_pixels` (all frames of a GIF together) or more elongated
    than `max_aspect_ratio`; see `keras_amb.data.image_io.image_limits` for
    the defaults.
    """
    import keras
    import tensorflow as tf

    from keras_amb.data.image_io import image_limits
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

    max_pixels, max_aspect_ratio = image_limits(max_pixels, max_aspect_ratio)

    def check_size(data):
        width, height, frames = header_size(data)
        return [
            tf.debugging.assert_positive(
                tf.stack([width, height]),
                message="image_bytes: not a JPEG, PNG, BMP, GIF or still WebP image "
                "(or a truncated one); refused before decoding. [width height] from "
                "its header"),
            tf.debugging.assert_less_equal(
                width * height * frames, tf.constant(max_pixels, tf.int64),
                message=f"image_bytes: over the limit of {max_pixels} pixels (all frames "
                "together); refused before decoding. width * height * frames from its "
                "header"),
            tf.debugging.assert_less_equal(
                tf.cast(tf.maximum(width, height), tf.float64),
                max_aspect_ratio * tf.cast(tf.minimum(width, height), tf.float64),
                message=f"image_bytes: too elongated (longer side over {max_aspect_ratio:g} "
                "times the shorter); refused before decoding. Longer side"),
        ]

    def decode(data):
        tf.debugging.assert_greater(
            tf.strings.length(data), 0, message="image_bytes: empty string, not an image"
        )
        with tf.control_dependencies(check_size(data)):
            data = tf.identity(data)
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


def export_saved_model(model, root, version=None, max_pixels=None, max_aspect_ratio=None):
    """Writes `root/<version>/` (TF Serving's layout) atomically.

    Returns the version folder. Never overwrites a version: the default is the
    next free number; the SavedModel is written to a hidden temporary folder
    and renamed into place, so a server watching `root` never loads half a
    version. `max_pixels` and `max_aspect_ratio` bound what one request's
    image may cost (see `serving_module`).
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
    if os.path.exists(root) and not os.path.isdir(root):
        raise ExportError(f"--output {root}: is a file; a SavedModel export is a folder")
    module = serving_module(model, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    try:
        atomic_write_directory(target, lambda tmp: tf.saved_model.save(
            module, tmp,
            signatures={
                "serving_default": module.serve_bytes.get_concrete_function(),
                "predict_images": module.serve_images.get_concrete_function(),
            },
        ))
    except OSError:
        if os.path.isdir(target):  # another export took this version meanwhile
            raise ExportError(
                f"{target} was written by another export meanwhile; versions are never "
                f"overwritten (next free: {next_version(root)})"
            ) from None
        raise
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
