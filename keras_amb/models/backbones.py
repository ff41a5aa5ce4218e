"""ResNet backbones split at the paper's points.

Feature extractor = stem + stages 1..3 (a functional model, images -> F);
the last stage (stage 4) is not part of it: the model builds it twice, as the
perception branch (stride 2) and as the attention branch's unshared copy
(stride 1). `resnet50` matches `keras.applications.ResNet50` layer for layer
and name for name so its ImageNet weights load; `resnet50_official` is the
network of the official ABN code (ResNet v1.5 bottlenecks, convolutions
without bias, He-normal fan-out initialisation, torchvision normalisation),
for from-scratch paper runs; the small presets keep the same shape for CPU
work at 32-96 px.
"""

import copy
import os

import keras

from keras_amb.backbone_specs import BACKBONES
from keras_amb.backbone_specs import HE_NORMAL_FAN_OUT  # noqa: F401 (re-exported)
from keras_amb.errors import WeightsUnavailableError  # noqa: F401 (re-exported)
from keras_amb.layers import batch_normalization
from keras_amb.layers import conv2d
from keras_amb.layers.image_normalization import ImageNormalization
from keras_amb.layers.residual_block import residual_stage

# Where keras.applications keeps the no-top ResNet-50 weights.
RESNET50_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    + RESNET50_WEIGHTS_FILE
)


def get_backbone_spec(name):
    """A copy of `BACKBONES[name]`; raises `ValueError` naming the choices."""
    if name not in BACKBONES:
        raise ValueError(
            f"Unknown backbone {name!r}. Choose one of: {', '.join(BACKBONES)}."
        )
    return dict(BACKBONES[name])


def feature_extractor(name, bn_momentum=0.9, dtype=None):
    """Builds the feature extractor (stem + stages 1..3) of a backbone.

    Args:
        name: str, a key of `BACKBONES`.
        bn_momentum: float, momentum of the batch normalisation layers.
        dtype: dtype policy of the layers.

    Returns:
        A functional `keras.Model` mapping RGB images in `[0, 255]`,
        `(N, H, W, 3)`, to the feature map F.
    """
    spec = get_backbone_spec(name)
    inputs = keras.Input((None, None, 3), name="images")
    x = ImageNormalization(spec["normalization"], dtype=dtype, name="normalization")(
        inputs
    )

    def bn(layer_name):
        return batch_normalization.BatchNormalization(
            epsilon=1.001e-5, momentum=bn_momentum, dtype=dtype, name=layer_name
        )

    def initializer():
        return keras.initializers.get(copy.deepcopy(spec["kernel_initializer"]))

    if spec["stem"] == "imagenet":
        x = keras.layers.ZeroPadding2D(3, dtype=dtype, name="conv1_pad")(x)
        x = conv2d.Conv2D(
            64, 7, strides=2, use_bias=spec["use_bias"],
            kernel_initializer=initializer(), dtype=dtype, name="conv1_conv",
        )(x)
        x = keras.layers.ReLU(dtype=dtype, name="conv1_relu")(bn("conv1_bn")(x))
        x = keras.layers.ZeroPadding2D(1, dtype=dtype, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, dtype=dtype, name="pool1_pool")(x)
    else:
        x = conv2d.Conv2D(
            spec["stage_filters"][0],
            3,
            padding="same",
            use_bias=False,
            kernel_initializer=initializer(),
            dtype=dtype,
            name="conv1_conv",
        )(x)
        x = keras.layers.ReLU(dtype=dtype, name="conv1_relu")(bn("conv1_bn")(x))
    for stage in range(3):
        for block in residual_stage(
            spec["stage_filters"][stage],
            spec["stage_blocks"][stage],
            stride=1 if stage == 0 else 2,
            bottleneck=spec["bottleneck"],
            use_bias=spec["use_bias"],
            bn_momentum=bn_momentum,
            version=spec["block_version"],
            kernel_initializer=spec["kernel_initializer"],
            dtype=dtype,
            name=f"conv{stage + 2}",
        ):
            x = block(x)
    return keras.Model(inputs, x, name=f"{name}_feature_extractor")


def _leaf_layers(layer):
    return [
        sub
        for sub in layer._flatten_layers(include_self=True, recursive=True)
        if sub.weights and not sub._layers
    ]


def load_resnet50_weights(model, weights):
    """Copies `keras.applications.ResNet50` weights into a `resnet50` model.

    The feature extractor and the perception branch get the matching layers;
    the attention branch's copy of stage 4 starts from the same stage-4
    weights.

    Args:
        model: an `AttentionBranchNetwork` with `backbone="resnet50"`.
        weights: `"imagenet"` (downloaded by Keras, or found in
            `~/.keras/models/`) or the path of a weights file of
            `keras.applications.ResNet50(include_top=False)`.

    Returns:
        The number of layers whose weights were copied.
    """
    if weights != "imagenet":
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise WeightsUnavailableError(
                f"Backbone weights file not found: {weights}"
            )
    try:
        source = keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=(None, None, 3)
        )
    except Exception as error:  # Keras raises a bare Exception on fetch failure.
        if weights == "imagenet":
            raise WeightsUnavailableError(
                "Could not download the ImageNet ResNet-50 weights (no internet?). "
                f"Download {RESNET50_WEIGHTS_URL} on a machine with internet and "
                "pass its path as --weights (or copy it into ~/.keras/models/)."
            ) from error
        raise WeightsUnavailableError(
            f"Could not load backbone weights from {weights}: {error}. The file "
            "must hold keras.applications.ResNet50(include_top=False) weights."
        ) from error
    source_layers = {layer.name: layer for layer in source.layers if layer.weights}
    copied = 0
    for layer in _leaf_layers(model):
        key = layer.name
        if key.startswith("attention_conv5"):
            key = key[len("attention_") :]
        if key in source_layers:
            layer.set_weights(source_layers[key].get_weights())
            copied += 1
    return copied


def branch_arguments(name):
    """Constructor arguments of a backbone's stage-4 branches (attention and
    perception branch): the last stage's shape, block type and init."""
    spec = get_backbone_spec(name)
    return {
        "stage_filters": spec["stage_filters"][3],
        "stage_blocks": spec["stage_blocks"][3],
        "bottleneck": spec["bottleneck"],
        "use_bias": spec["use_bias"],
        "block_version": spec["block_version"],
        "kernel_initializer": copy.deepcopy(spec["kernel_initializer"]),
    }
