"""Datasets and tf.data pipelines.

The names below load their module on first use, so that importing one
Keras-free module of this package (`image_io`, `map_store`, `folder`'s
listing) does not import TensorFlow: `keras-amb predict` and `visualize`
list their input images, and refuse an empty folder, before TensorFlow's
seconds of imports.
"""

import importlib

_LAZY = {
    "BadImagesError": "keras_amb.data.folder",
    "ImageReadError": "keras_amb.data.image_io",
    "read_image": "keras_amb.data.image_io",
    "prepare": "keras_amb.data.pipeline",
    "DataSource": "keras_amb.data.sources",
    "load_source": "keras_amb.data.sources",
    "source_for_data": "keras_amb.data.sources",
    "SyntheticConfig": "keras_amb.data.synthetic",
    "SyntheticConfigV2": "keras_amb.data.synthetic_v2",
    "DatasetError": "keras_amb.errors",
    "DatasetUnavailableError": "keras_amb.errors",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_amb.data' has no attribute {name!r}")


__all__ = list(_LAZY)
