"""What a `.keras` model file says about its model, read without Keras.

A `.keras` file is a zip archive of `config.json` (the model's class and
constructor arguments), `metadata.json` (the Keras version, the date saved)
and `model.weights.h5` (the variables). `keras-amb info` needs nothing else,
so it reads them directly and starts in a fraction of a second instead of
the seconds importing TensorFlow takes.
"""

import dataclasses
import json
import zipfile

from keras_amb.arguments import LEGACY_ARGUMENTS
from keras_amb.arguments import MAP_TERMS

# The constructor defaults `describe` needs, for files saved before an
# argument existed.
DEFAULTS = {"bypass": True, "amb": False, "pc": False, "cot": False,
            "attention_target_weight": 0.0, "naive_bn_statistics": False,
            "mask_threshold": 0.5, "mask_slope": 10.0, "hard_mask": False,
            "class_names": None, "resize_ratio": 1.0, "amb_gradient": "all",
            **MAP_TERMS}
# Where `AttentionMiningNetwork`'s defaults differ.
MINING_DEFAULTS = {"bypass": False, "amb": True, "pc": True, "cot": True}


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
    >>> info = read_model_file("saved_models/synthetic-proposed-.../model.keras")  # doctest: +SKIP
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
    config = {**DEFAULTS, **config}
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
    from keras_amb.runs import check_model_file

    check_model_file(path)  # an empty, non-zip, unreadable or plain Keras file: one line
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            names = archive.namelist()
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            parameters = _count_parameters(archive) if count_parameters else None
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as error:
        from keras_amb.runs import RunError

        raise RunError(
            f"{path}: not a readable .keras model file ({error.__class__.__name__}: {error})"
        ) from None
    arguments = dict(config.get("config") or {})
    for old, new in LEGACY_ARGUMENTS.items():
        if old in arguments:
            arguments[new] = arguments.pop(old)
    class_name = config.get("class_name", "?")
    defaults = {**DEFAULTS, **(MINING_DEFAULTS if class_name == "AttentionMiningNetwork" else {})}
    return ModelFile(
        path=path, class_name=class_name, config={**defaults, **arguments}, keras_version=metadata.get("keras_version"),
        date_saved=metadata.get("date_saved"), parameters=parameters,
    )
