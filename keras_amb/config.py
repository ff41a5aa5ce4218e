"""Experiment configuration: built-in defaults < YAML file < command line.

Config files are read with `yaml.safe_load` (no code execution); every key is
checked, and errors name the file and the key.
"""

import copy
import importlib.resources
import os

import yaml

DEFAULTS = {
    "dataset": "synthetic",
    "data_dir": None,
    "skip_bad_images": False,
    "synthetic": {},
    "backbone": "resnet_tiny",
    "weights": None,
    "image_size": 64,
    "batch_size": 32,
    "model": "proposed",
    "amb": True,
    "pc": True,
    "cot": True,
    "init_from": None,
    "pretrain_epochs": 8,
    "epochs": 8,
    "mask_threshold": 0.5,
    "mask_slope": 10.0,
    "hard_mask": False,
    "mining_weight": 1e-4,
    "pc_weight": 1.0,
    "pc_contrastive_weight": 1e-4,
    "center_lr_multiplier": 1.0,
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

MODELS = ("abn", "proposed")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "cosine", "constant")


class ConfigError(ValueError):
    """A configuration problem; the message names the file or option."""


def bundled_config_path(name):
    """Path of a config shipped with keras-amb (`configs/<name>.yaml`), or None."""
    resource = importlib.resources.files("keras_amb.configs").joinpath(f"{name}.yaml")
    return str(resource) if resource.is_file() else None


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


def resolve(config_file=None, overrides=None):
    """The run's configuration.

    Order: built-in defaults, then the config file (`config_file`, else the
    config bundled for the chosen dataset, else `folder.yaml` for a folder
    dataset), then `overrides` (command-line options that were given).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    config = copy.deepcopy(DEFAULTS)
    if config_file is None:
        dataset = overrides.get("dataset", DEFAULTS["dataset"])
        config_file = bundled_config_path(dataset)
        if config_file is None and os.path.isdir(str(dataset)):
            config_file = bundled_config_path("folder")
    if config_file is not None:
        data = load_yaml(config_file)
        if isinstance(data.get("synthetic"), dict):
            data["synthetic"] = {
                k: v for k, v in data["synthetic"].items() if k != "version"
            }
        _merge(config, data, config_file)
        config["config_file"] = os.fspath(config_file)
    _merge(config, overrides, "command line")
    validate(config, config.get("config_file") or "command line")
    return config


def _check(condition, source, key, value, expected):
    if not condition:
        raise ConfigError(f"{source}: {key} must be {expected}, got {value!r}")


def validate(config, source="config"):
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
    _check(config["model"] in MODELS, source, "model", config["model"], f"one of {MODELS}")
    from keras_amb.models.backbones import BACKBONES

    _check(config["backbone"] in BACKBONES, source, "backbone", config["backbone"], f"one of {tuple(BACKBONES)}")
    for key in ("mask_threshold",):
        value = config[key]
        _check(isinstance(value, (int, float)) and 0 <= value <= 1, source, key, value, "a number in [0, 1]")
    for key in ("mask_slope", "mining_weight", "pc_weight", "pc_contrastive_weight", "center_lr_multiplier", "attention_target_weight"):
        value = config[key]
        _check(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0, source, key, value, "a number >= 0")
    optimizer = config["optimizer"]
    _check(isinstance(optimizer, dict) and optimizer.get("name") in OPTIMIZERS, source, "optimizer.name", optimizer, f"one of {OPTIMIZERS}")
    lr = optimizer.get("learning_rate")
    _check(isinstance(lr, (int, float)) and lr > 0, source, "optimizer.learning_rate", lr, "a number > 0")
    schedule = config["lr_schedule"]
    _check(isinstance(schedule, dict) and schedule.get("name") in SCHEDULES, source, "lr_schedule.name", schedule, f"one of {SCHEDULES}")
    scale = config["crop_scale"]
    _check(
        isinstance(scale, (list, tuple)) and len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1,
        source, "crop_scale", scale, "[min, max] with 0 < min <= max <= 1",
    )
    if config["model"] == "proposed" and config["cot"] and not config["amb"]:
        raise ConfigError(
            f"{source}: cot needs the attention mining branch (amb); "
            "use --amb or --no-cot"
        )
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
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    os.replace(tmp, path)
