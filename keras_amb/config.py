"""Experiment configuration: built-in defaults < YAML file < command line.

Config files are read with `yaml.safe_load` (no code execution); every key is
checked, and errors name the file and the key. Config keys are the model's
constructor arguments where they are model arguments (`amb`, `pc`, `cot`,
`amb_weight`, ...): the same name everywhere.
"""

import copy
import importlib.resources
import os

import yaml

from keras_amb.files import atomic_write_text

DEFAULTS = {
    "dataset": "synthetic",
    "data_dir": None,
    "skip_bad_images": False,
    "synthetic": {},
    "backbone": "resnet_tiny",
    "weights": None,
    "image_size": 64,
    "batch_size": 32,
    "architecture": "proposed",
    "amb": True,
    "pc": True,
    "cot": True,
    "init_from": None,
    "pretrain_epochs": 8,
    "epochs": 8,
    "mask_threshold": 0.5,
    "mask_slope": 10.0,
    "hard_mask": False,
    "amb_weight": 1e-4,
    "amb_gradient": "all",
    "pc_weight": 1.0,
    "pc_contrastive_weight": 1e-4,
    "pc_distance": "euclidean",
    "center_lr_multiplier": 1.0,
    "naive_bn_statistics": False,
    "attention_targets": None,
    "attention_target_weight": 10.0,
    "dropout": 0.0,
    "optimizer": {
        "name": "sgd",
        "learning_rate": 0.05,
        "momentum": 0.9,
        "weight_decay": 1e-4,
    },
    "lr_schedule": {"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1},
    "crop_scale": [0.35, 1.0],
    "flip": True,
    "resize_ratio": None,
    "cache": False,
    "seed": 0,
    "deterministic": False,
    "mixed_precision": None,
    "distribute": False,
    "jit_compile": "auto",
    "attention_images": 4,
    "backend": None,
}

# Keys of earlier releases: a config that uses one is told the new name.
RENAMED = {
    "model": "architecture",
    "mining_weight": "amb_weight",
}
ARCHITECTURES = ("abn", "proposed")
SCHEDULES = ("step", "cosine", "constant")
# The config a dataset gets when no --config is given. ImageNet-initialised
# configs say so in their names; the paper's from-scratch setups are
# `<dataset>_paper`.
DATASET_CONFIGS = {
    "synthetic": "synthetic",
    "stanford_dogs": "stanford_dogs_imagenet",
    "caltech_birds2010": "caltech_birds2010_imagenet",
}


class ConfigError(ValueError):
    """A configuration problem; the message names the file or option."""


def bundled_configs():
    """Names of the configs shipped with keras-amb (`configs/*.yaml`)."""
    folder = importlib.resources.files("keras_amb.configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def bundled_config_path(name):
    """Path of a config shipped with keras-amb (`configs/<name>.yaml`), or None."""
    resource = importlib.resources.files("keras_amb.configs").joinpath(f"{name}.yaml")
    return str(resource) if resource.is_file() else None


def find_config(name_or_path):
    """A config file's path: the path itself, or the name of a bundled one
    (`synthetic_v2` or `synthetic_v2.yaml` for `configs/synthetic_v2.yaml`)."""
    path = os.fspath(name_or_path)
    if os.path.isfile(path):
        return path
    if not os.path.dirname(path):
        bundled = bundled_config_path(path[:-5] if path.endswith(".yaml") else path)
        if bundled:
            return bundled
    raise ConfigError(
        f"Config file not found: {path} (bundled configs, usable by name: "
        f"{', '.join(bundled_configs())})"
    )


def load_yaml(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"Config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: must be a mapping of option: value, got {type(data).__name__}"
        )
    return data


def _merge(base, update, source):
    for key, value in update.items():
        if key in RENAMED and source != "defaults":
            raise ConfigError(
                f"{source}: option {key!r} is now called {RENAMED[key]!r}"
            )
        if key not in DEFAULTS and source != "defaults":
            raise ConfigError(
                f"{source}: unknown option {key!r}. Known options: "
                f"{', '.join(sorted(DEFAULTS))}"
            )
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            merged = dict(base[key])
            merged.update(value)
            base[key] = merged
        else:
            base[key] = value
    return base


def default_config_file(dataset):
    """The config file used for `dataset` when none is given (or None)."""
    name = DATASET_CONFIGS.get(str(dataset))
    if name is not None:
        return bundled_config_path(name)
    if os.path.isdir(str(dataset)):
        return bundled_config_path("folder")
    return None


def merged(config_file=None, overrides=None):
    """Defaults, config file and overrides merged, not yet validated."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    config = copy.deepcopy(DEFAULTS)
    if config_file is None:
        config_file = default_config_file(overrides.get("dataset", DEFAULTS["dataset"]))
    else:
        config_file = find_config(config_file)
    if config_file is not None:
        data = load_yaml(config_file)
        if isinstance(data.get("synthetic"), dict):
            data["synthetic"] = dict(data["synthetic"])
        _merge(config, data, config_file)
        config["config_file"] = os.fspath(config_file)
    _merge(config, overrides, "command line")
    return config


def resolve(config_file=None, overrides=None):
    """The run's configuration.

    Order: built-in defaults, then the config file (`config_file`, a path or
    the name of a bundled config; else the one bundled for the chosen
    dataset, `folder.yaml` for a folder dataset), then `overrides`
    (command-line options that were given).
    """
    config = merged(config_file, overrides)
    validate(config, config.get("config_file") or "command line")
    return config


def _check(condition, source, key, value, expected):
    if not condition:
        raise ConfigError(f"{source}: {key} must be {expected}, got {value!r}")


def validate(config, source="config"):
    """Checks every key; raises `ConfigError` naming `source` and the key.

    Model arguments are checked by the model's own checks
    (`keras_amb.models.attention_branch_network.check_arguments`).
    """
    from keras_amb.models.attention_branch_network import check_arguments
    from keras_amb.models.factory import MODEL_KEYS

    def positive_int(key):
        value = config[key]
        _check(
            isinstance(value, int) and not isinstance(value, bool) and value > 0,
            source, key, value, "a positive integer",
        )

    for key in ("image_size", "batch_size", "epochs"):
        positive_int(key)
    value = config["pretrain_epochs"]
    _check(isinstance(value, int) and value >= 0, source, "pretrain_epochs", value, "an integer >= 0")
    _check(config["architecture"] in ARCHITECTURES, source, "architecture",
           config["architecture"], f"one of {ARCHITECTURES}")
    model_arguments = {k: config[k] for k in MODEL_KEYS}
    model_arguments["attention_target_weight"] = config["attention_target_weight"]
    if config["resize_ratio"] is not None:
        model_arguments["resize_ratio"] = config["resize_ratio"]
    if config["architecture"] == "abn":
        model_arguments["cot"] = False
    try:
        check_arguments(**model_arguments)
    except ValueError as error:
        raise ConfigError(f"{source}: {str(error).replace('`', '')}") from None
    optimizer = config["optimizer"]
    from keras_amb.optimizers import NAMES

    _check(isinstance(optimizer, dict) and optimizer.get("name") in NAMES, source,
           "optimizer.name", optimizer, f"one of {NAMES}")
    lr = optimizer.get("learning_rate")
    _check(isinstance(lr, (int, float)) and lr > 0, source, "optimizer.learning_rate", lr, "a number > 0")
    decay = optimizer.get("weight_decay")
    _check(decay is None or (isinstance(decay, (int, float)) and decay >= 0), source,
           "optimizer.weight_decay", decay, "a number >= 0")
    schedule = config["lr_schedule"]
    _check(isinstance(schedule, dict) and schedule.get("name") in SCHEDULES, source,
           "lr_schedule.name", schedule, f"one of {SCHEDULES}")
    milestones = schedule.get("milestones", [])
    _check(isinstance(milestones, list) and all(
        isinstance(m, (int, float)) and 0 < m < 1 for m in milestones), source,
        "lr_schedule.milestones", milestones, "a list of fractions of the stage in (0, 1)")
    scale = config["crop_scale"]
    _check(
        isinstance(scale, (list, tuple)) and len(scale) == 2
        and all(isinstance(s, (int, float)) for s in scale) and 0 < scale[0] <= scale[1] <= 1,
        source, "crop_scale", scale, "[min, max] with 0 < min <= max <= 1",
    )
    _check(isinstance(config["flip"], bool), source, "flip", config["flip"], "true or false")
    if config["mixed_precision"] not in (None, "mixed_float16", "mixed_bfloat16"):
        raise ConfigError(
            f"{source}: mixed_precision must be mixed_float16 or mixed_bfloat16, "
            f"got {config['mixed_precision']!r}"
        )
    if config["backend"] not in (None, "tensorflow", "jax", "torch"):
        raise ConfigError(
            f"{source}: backend must be tensorflow, jax or torch, got {config['backend']!r}"
        )
    if not isinstance(config["synthetic"], dict):
        raise ConfigError(f"{source}: synthetic must be a mapping, got {config['synthetic']!r}")
    return config


def dump(config, path):
    """Writes the resolved config as YAML (atomically)."""
    atomic_write_text(path, to_yaml(config))


def to_yaml(config):
    return yaml.safe_dump(config, sort_keys=False)
