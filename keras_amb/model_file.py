"""What a `.keras` model file says about its model, read without Keras.

A `.keras` file is a zip archive of `config.json` (the model's class and
constructor arguments), `metadata.json` (the Keras version, the date saved)
and `model.weights.h5` (the variables). `keras-amb info` needs nothing else,
so it reads them directly and starts in a fraction of a second instead of
the seconds importing TensorFlow takes.
"""

import dataclasses
import json
import os
import zipfile

from keras_amb import settings
from keras_amb.arguments import ABN_DEFAULTS
from keras_amb.backbone_specs import BACKBONES
from keras_amb.arguments import MINING_DEFAULTS
from keras_amb.arguments import saved_arguments
from keras_amb.arguments import check_arguments
from keras_amb.errors import RunError

# What a model file may hold: Keras writes these three (and `assets/` for
# layers with assets, which keras-amb's have not). Each is read into memory
# or extracted to disk while loading, so each has a bound: the config and
# the metadata by size, the weights by what the declared model needs.
CONFIG_MEMBER, METADATA_MEMBER, WEIGHTS_MEMBER = "config.json", "metadata.json", "model.weights.h5"
MAX_CONFIG_BYTES = 16 * 2**20
MAX_METADATA_BYTES = 2**20
MAX_ASSETS_BYTES = 16 * 2**20
# The weights file holds the model's variables and, in a checkpoint, the two
# optimizers' (a momentum per weight each): at most 3 copies; 4 with slack.
WEIGHT_COPIES = 4
WEIGHTS_SLACK_BYTES = 16 * 2**20
# The largest model (float32 variables, in bytes) a file may declare before
# anything is built: `KERAS_AMB_MAX_MODEL_BYTES` (`keras_amb.settings`).
MAX_MODEL_BYTES_VARIABLE = "KERAS_AMB_MAX_MODEL_BYTES"

# A saved config's missing arguments: the class's defaults, under what
# `saved_arguments` fills in for the arguments the file predates.
DEFAULTS = {"AttentionBranchNetwork": ABN_DEFAULTS, "AttentionMiningNetwork": MINING_DEFAULTS}


@dataclasses.dataclass
class ModelFile:
    """A `.keras` file's model class, constructor arguments and metadata.

    Attributes:
        path: str, the file.
        class_name: str, the model's class (`"AttentionMiningNetwork"`).
        config: dict, its constructor arguments (`get_config()` ; legacy
            names mapped, missing ones at their defaults).
        keras_version: str or None, the Keras version that saved it.
        date_saved: str or None, when it was saved.
        parameters: int or None, the number of the model's variables' values
            (as `model.count_params()`), None without `model.weights.h5`.

    Example:
    >>> info = read_model_file("saved_models/synthetic-mining-.../model.keras")  # doctest: +SKIP
    >>> info.class_name, describe(info.config), info.config["class_names"]  # doctest: +SKIP
    """

    path: str
    class_name: str
    config: dict
    keras_version: str = None
    date_saved: str = None
    parameters: int = None


def describe(config):
    """`"ABN, bypass"`, `"AMB + PC + COT, no bypass"` and the like.

    Args:
        config: dict, a model's config (`model.get_config()`, or
            `ModelFile.config`).
    """
    config = {**ABN_DEFAULTS, **config}
    parts = [name for key, name in (("amb", "AMB"), ("pc", "PC"), ("cot", "COT"))
             if config[key]] or ["ABN"]
    if config["amb"] and config["amb_gradient"] == "attention":
        parts[0] = "AMB (attention only)"
    if config["attention_target_weight"] > 0:
        parts.append("attention targets")
    if config["area_weight"] > 0:
        target = config["area_target"]
        parts.append(f"area {target:g}" if target else "area")
    if config["smoothness_weight"] > 0:
        parts.append("smoothness")
    if config["erasing_weight"] > 0:
        parts.append("erasing")
    if config["map_normalization"] != "none":
        parts.append(f"normalised map ({config['map_normalization']})")
    text = " + ".join(parts) + (", bypass" if config["bypass"] else ", no bypass")
    if config["naive_bn_statistics"]:
        text += ", naive BN statistics"
    return text


def declared_parameters(backbone, num_classes):
    """The number of variables' values a model of this backbone and class
    count has (the mining model's; an ABN has slightly fewer)."""
    k2, k1, k0 = BACKBONES[backbone]["parameters"]
    return k2 * num_classes**2 + k1 * num_classes + k0


def _fail(path, reason):
    raise RunError(f"{path}: {reason}")


def _check_members(path, archive, weights_bound):
    """Refuses unknown members, and weights and assets larger than their
    bound (the two JSON members are bounded where they are read,
    `_read_json`)."""
    assets = 0
    for info in archive.infolist():
        name = info.filename
        if name in (CONFIG_MEMBER, METADATA_MEMBER):
            continue
        if name == WEIGHTS_MEMBER:
            if weights_bound is not None and info.file_size > weights_bound:
                _fail(path, f"its {name} is {info.file_size:,} bytes, more than a model of "
                            f"its declared shape needs ({weights_bound:,} at most); "
                            "the file is damaged or not what it says")
        elif name.startswith("assets/"):
            assets += info.file_size
            if assets > MAX_ASSETS_BYTES:
                _fail(path, f"its assets/ hold over {MAX_ASSETS_BYTES // 2**20} MiB; "
                            "keras-amb models have no assets")
        else:
            _fail(path, f"holds an unexpected member {name!r} (a model file holds "
                        f"{CONFIG_MEMBER}, {METADATA_MEMBER} and {WEIGHTS_MEMBER})")


def _read_json(path, archive, name, bound):
    info = archive.getinfo(name)
    if info.file_size > bound:
        _fail(path, f"its {name} is {info.file_size:,} bytes, over the {bound // 2**20} MiB "
                    f"a model file's {name} may have")
    with archive.open(info) as stream:
        data = stream.read(bound + 1)  # the declared size may lie
    if len(data) > bound:
        _fail(path, f"its {name} is over the {bound // 2**20} MiB a model file's {name} may have")
    try:
        value = json.loads(data)
    except ValueError as error:
        _fail(path, f"damaged .keras file ({name} is not JSON: {error})")
    if not isinstance(value, dict):
        _fail(path, f"damaged .keras file ({name} must hold a JSON object, "
                    f"not {type(value).__name__})")
    return value


def _check_arguments(path, class_name, arguments):
    """The constructor arguments a file declares, checked as the constructor
    would, and bounded by what the declared model costs."""
    if not isinstance(arguments, dict):
        _fail(path, f"damaged .keras file (config.json's \"config\" must be a JSON object, "
                    f"not {type(arguments).__name__})")
    arguments = saved_arguments(arguments)
    try:
        check_arguments(**{k: v for k, v in arguments.items() if k != "cot"})
    except ValueError as error:
        _fail(path, f"config.json: {error}")
    num_classes = arguments.get("num_classes")
    if num_classes is None:
        _fail(path, "config.json declares no num_classes")
    names = arguments.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            _fail(path, "config.json: class_names must be a list of strings")
        if len(names) != num_classes:
            _fail(path, f"config.json: {len(names)} class_names for num_classes={num_classes}")
    backbone = arguments.get("backbone", "resnet50")
    need = 4 * declared_parameters(backbone, int(num_classes))
    limit = settings.limit(MAX_MODEL_BYTES_VARIABLE)
    if need > limit:
        _fail(path, f"its model ({class_name}, backbone {backbone}, num_classes="
                    f"{num_classes}) needs {need / 2**30:,.1f} GiB for its weights, over the "
                    f"{limit / 2**30:.1f} GiB limit; set {MAX_MODEL_BYTES_VARIABLE} "
                    "(in bytes) to load it anyway")
    return need


def check_model_file(path):
    """Fails unless `path` is a readable `.keras` archive of a keras-amb model
    that costs what its declared shape needs.

    Reads only the archive's index and its `config.json`, before Keras loads
    anything: an empty file, a file that is not a `.keras` archive, a file
    this user may not read, a plain Keras model (a `Sequential`, a
    `keras.applications` network), malformed JSON, bad constructor
    arguments, a model over `KERAS_AMB_MAX_MODEL_BYTES`, and members that are
    unexpected or larger than the declared model needs each get their own
    message.

    Raises:
        RunError: naming the file and what is wrong with it.

    Example:
    >>> check_model_file("saved_models/synthetic-mining-.../model.keras")  # doctest: +SKIP
    """
    return _inspect(path)[0]


def _inspect(path, count_parameters=False):
    """`(config, metadata, parameters)` of a model file, every check of
    `check_model_file` made, the archive opened once; `parameters` is None
    unless `count_parameters`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except PermissionError:
        _fail(path, "permission denied (the file exists, but this user may not read it)")
    except IsADirectoryError:
        _fail(path, "is a folder, not a .keras model file")
    except OSError as error:
        _fail(path, f"cannot be read ({error.strerror})")
    if not head:
        _fail(path, "empty file, not a .keras model")
    if not zipfile.is_zipfile(path):
        _fail(path, "not a .keras model file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            if CONFIG_MEMBER not in archive.namelist():
                _fail(path, f"not a .keras model file (no {CONFIG_MEMBER} inside)")
            config = _read_json(path, archive, CONFIG_MEMBER, MAX_CONFIG_BYTES)
            registered = config.get("registered_name")
            if not str(registered).startswith("keras_amb>"):
                kind = config.get("class_name")
                _fail(path, f"not a keras-amb model (it holds a "
                            f"{kind if isinstance(kind, str) else 'model of unknown kind'}); "
                            "keras-amb commands need a model trained by keras-amb")
            need = _check_arguments(path, config.get("class_name"), config.get("config"))
            _check_members(path, archive, WEIGHT_COPIES * need + WEIGHTS_SLACK_BYTES)
            metadata = (_read_json(path, archive, METADATA_MEMBER, MAX_METADATA_BYTES)
                        if METADATA_MEMBER in archive.namelist() else {})
            parameters = None
            if count_parameters:
                try:
                    parameters = _count_parameters(archive)
                except (OSError, KeyError, ValueError) as error:
                    _fail(path, f"not a readable .keras model file "
                                f"({error.__class__.__name__}: {error})")
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        _fail(path, f"damaged .keras file ({error})")
    return config, metadata, parameters


def _count_parameters(archive):
    """Values of the model's variables in `model.weights.h5` (the
    optimizer's and the random seeds' left out), or None."""
    if "model.weights.h5" not in archive.namelist():
        return None
    import h5py

    total = 0

    def add(name, item):
        nonlocal total
        parts = name.split("/")
        if (isinstance(item, h5py.Dataset) and parts[0] != "optimizer"
                and not any("seed_generator" in part for part in parts)):
            total += item.size

    with archive.open("model.weights.h5") as stream, h5py.File(stream, "r") as weights:
        weights.visititems(add)
    return total


def read_model_file(path, count_parameters=True):
    """A `ModelFile` for a `.keras` file, without importing Keras.

    Args:
        path: str, the `.keras` file.
        count_parameters: bool, whether to count the variables' values
            (reads the weights file's index, not its values).

    Raises:
        RunError: the file is not a `.keras` archive with a model config.
    """
    # Every way a file can be wrong is one line; the archive is read once.
    config, metadata, parameters = _inspect(path, count_parameters)
    arguments = saved_arguments(config.get("config") or {})
    class_name = config.get("class_name", "?")
    text = lambda value: value if isinstance(value, str) else None  # noqa: E731
    defaults = DEFAULTS.get(class_name, ABN_DEFAULTS)
    return ModelFile(
        path=path, class_name=class_name, config={**defaults, **arguments},
        keras_version=text(metadata.get("keras_version")),
        date_saved=text(metadata.get("date_saved")), parameters=parameters,
    )
