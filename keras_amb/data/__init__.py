"""Datasets and tf.data pipelines."""

from keras_amb.data.folder import BadImagesError
from keras_amb.data.image_io import ImageReadError
from keras_amb.data.image_io import read_image
from keras_amb.data.pipeline import prepare
from keras_amb.data.sources import DataSource
from keras_amb.data.sources import load_source
from keras_amb.data.sources import source_for_data
from keras_amb.data.synthetic import SyntheticConfig
from keras_amb.data.synthetic_v2 import SyntheticConfigV2
from keras_amb.errors import DatasetError
from keras_amb.errors import DatasetUnavailableError
