"""The backbones keras-amb builds, as data: one table, read without Keras.

`parameters` is `(K2, K1, K0)`: a model with K classes has exactly
`K2 * K**2 + K1 * K + K0` variables' values (the proposed model's; an ABN's
are fewer), so a model file's cost is known from its config before anything
is built (`model_file.declared_parameters`; `tests/test_hostile.py` checks
the small ones against built models).

`keras_amb.models.backbones` builds a network from an entry; the config
reader, the command line's choices and the model-file checks read the
names (`arguments.BACKBONES`) from the same table.
"""

# PyTorch's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, which the
# official ABN code applies to every convolution.
HE_NORMAL_FAN_OUT = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
}

# What the small presets share: basic blocks, a 3x3 stem without pooling.
_SMALL = {
    "bottleneck": False,
    "stem": "small",
    "use_bias": False,
    "block_version": "v1",
    "kernel_initializer": "he_normal",
    "normalization": "unit",
    "pretrained": False,
}

# ResNet-50's shape: bottleneck stages of 3, 4, 6 and 3 blocks, a 7x7 stem.
_RESNET50 = {
    "bottleneck": True,
    "stage_blocks": (3, 4, 6, 3),
    "stage_filters": (64, 128, 256, 512),
    "stem": "imagenet",
}

BACKBONES = {
    "resnet50": dict(
        _RESNET50,
        parameters=(2, 6158, 38594436),
        use_bias=True,
        block_version="v1",
        kernel_initializer="he_normal",
        normalization="caffe",
        pretrained=True,
        description="ResNet-50 of keras.applications (224 px; attention map "
        "14x14); loads ImageNet weights.",
    ),
    "resnet50_official": dict(
        _RESNET50,
        parameters=(2, 6158, 38556612),
        use_bias=False,
        block_version="v1.5",
        kernel_initializer=HE_NORMAL_FAN_OUT,
        normalization="torch",
        pretrained=False,
        description="ResNet-50 as in the official ABN code (v1.5 bottlenecks, "
        "no conv bias, He-normal fan-out init), for from-scratch paper runs.",
    ),
    "resnet_small": dict(
        _SMALL,
        parameters=(2, 398, 1620196),
        stage_blocks=(2, 2, 2, 2),
        stage_filters=(32, 64, 96, 128),
        description="Narrow ResNet-18 shape for CPU work at 32-96 px "
        "(attention map at 1/4 of the input).",
    ),
    "resnet_tiny": dict(
        _SMALL,
        parameters=(2, 158, 105684),
        stage_blocks=(1, 1, 1, 1),
        stage_filters=(16, 24, 32, 48),
        description="Smallest ResNet (one basic block per stage) for tests "
        "and quick CPU runs (attention map at 1/4 of the input).",
    ),
}
