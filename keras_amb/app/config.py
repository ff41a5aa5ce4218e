"""Experiment configuration: built-in defaults < YAML file < command line.

Config files are read with `yaml_reader.load` (safe tags; bounded size, depth
and aliases); every key is
checked, and errors name the file and the key. Config keys are the model's
constructor arguments where they are model arguments (`amb`, `pc`, `cot`,
`amb_weight`, ...): the same name everywhere.

`resolve` returns a `RunConfig` (`keras_amb/app/run_config.py`): the checked
config as four typed sections, data, model, schedule and runtime. The
command line's dotted keys and `--set KEY=VALUE` are read by
`keras_amb/app/overrides.py`.

Every key is checked by `config_checks.validate`, with a message naming
the file (or option) and the key; the model's own arguments and their
checks are in `keras_amb/arguments.py`.
"""

import copy
import importlib.resources
import os

import yaml

from keras_amb.app import yaml_reader
from keras_amb.errors import CommandLineError
from keras_amb.errors import ConfigError  # noqa: F401 (re-exported)
from keras_amb.arguments import architecture_name
from keras_amb.app.config_checks import option_name
from keras_amb.app.config_checks import validate
from keras_amb.files import atomic_write_text
from keras_amb.app.overrides import key_path
from keras_amb.app.overrides import nest_overrides
from keras_amb.app.overrides import parse_assignments
from keras_amb.app.run_config import RunConfig

# The built-in defaults, flat as in YAML: read from the typed sections
# field defaults (`keras_amb.app.run_config`), where the keys are written once.
DEFAULTS = RunConfig().to_dict()

# Keys of earlier releases: a config that uses one is told the new name
# (the message goes in 1.0).
RENAMED = {
    "model": "architecture",
    "mining_weight": "amb_weight",
}
# Mappings that may be given by their name alone (`optimizer: adam`).
SHORT_FORMS = ("optimizer", "lr_schedule")
# The config a dataset gets when no --config is given. ImageNet-initialised
# configs say so in their names; the paper's from-scratch setups are
# `<dataset>_paper`.
DATASET_CONFIGS = {
    "synthetic": "synthetic",
    "stanford_dogs": "stanford_dogs_imagenet",
    "caltech_birds2010": "caltech_birds2010_imagenet",
}


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
    """A config file's mapping, read within `yaml_reader`'s bounds (size,
    depth, alias expansion); `ConfigError` naming the file otherwise."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"Config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(yaml_reader.MAX_BYTES + 1)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
    data = yaml_reader.load(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: must be a mapping of option: value, got {type(data).__name__}"
        )
    return data


def _merge(base, update, source):
    error = CommandLineError if source == "command line" else ConfigError
    for key, value in update.items():
        if key in RENAMED and source != "defaults":
            raise error(
                f"{source}: option {key!r} is now called {RENAMED[key]!r}"
            )
        if key not in DEFAULTS and source != "defaults":
            raise error(
                f"{source}: unknown option {key!r}. Known options: "
                f"{', '.join(sorted(DEFAULTS))}"
            )
        if key == "architecture":
            value = architecture_name(value)  # "proposed" is "mining"
        if key in SHORT_FORMS and isinstance(value, str):
            value = {"name": value}  # `optimizer: sgd` is `optimizer: {name: sgd}`
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
    """Defaults, config file and overrides merged, not yet validated: a flat
    dict (YAML form) with the file's path under "config_file".

    `overrides` is a nested mapping (`nest_overrides`, which leaves out
    options not given); a None value sets the key to None."""
    overrides = overrides or {}
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
    if isinstance(config.get("weights"), str) and config["weights"].lower() == "none":
        config["weights"] = None  # `--weights none`, `weights: none`: no weights file
    return config


def resolve(config_file=None, overrides=None, assignments=(), option_names=None):
    """The run's configuration, checked: a `RunConfig`.

    Order: built-in defaults, then the config file (`config_file`, a path or
    the name of a bundled config; else the one bundled for the chosen
    dataset, `folder.yaml` for a folder dataset), then `overrides`, then
    `assignments`.

    Args:
        config_file: str or None.
        overrides: mapping of config keys to values, None for an option not
            given. A nested key is dotted (`optimizer.learning_rate`) or a
            mapping (`{"optimizer": {"learning_rate": 0.1}}`); a key may
            start with its section (`model.pc_weight`).
        assignments: `KEY=VALUE` strings, as `keras-amb train --set` takes
            them (`parse_assignments`); applied last.
        option_names: mapping of override keys to the command-line option
            that gave them, so an error names the option (default: the key
            as `--key-name`).

    Example:

    ```python
    cfg = resolve("synthetic_v2", {"epochs": 2}, ["optimizer.momentum=0.8"])
    cfg.schedule.epochs, cfg.schedule.optimizer["momentum"]   # (2, 0.8)
    ```
    """
    option_names = dict(option_names or {})
    given = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        path = ".".join(key_path(key))
        name = option_names.get(key) or option_name(path)
        if isinstance(value, dict):
            given.update({f"{path}.{sub}": name for sub in value})
        else:
            given[path] = name
    assigned = parse_assignments(assignments)
    given.update({".".join(key_path(key)): f"--set {key}" for key in assigned})
    nested = nest_overrides(overrides or {})
    nest_overrides(assigned, keep_none=True, into=nested)
    config = merged(config_file, nested)
    config_file = config.pop("config_file", None)
    validate(config, config_file or "command line", given=given)
    check_dataset(config["dataset"], given.get("dataset") or config_file or "dataset")
    return RunConfig.from_dict(config, config_file=config_file)


def check_dataset(dataset, origin="--dataset"):
    """Fails unless `dataset` is a known name or an existing folder, naming
    `origin` (the option or the config file that gave it) and the closest
    known name. Reads no data: a mistyped name fails in a fraction of a
    second, `--print-config` included."""
    import difflib

    if dataset in DATASET_CONFIGS or os.path.isdir(dataset):
        return
    error = CommandLineError if origin.startswith("--") else ConfigError
    names = ", ".join(DATASET_CONFIGS)
    if os.path.exists(dataset):
        raise error(f"{origin} {dataset}: is a file; a folder dataset is a folder of "
                    "class subfolders")
    looks_like_path = os.sep in dataset or dataset.startswith(".") or dataset.startswith("~")
    if looks_like_path:
        raise error(f"{origin} {dataset}: no such folder (a dataset is {names}, or a "
                    "folder of class subfolders)")
    close = difflib.get_close_matches(dataset, list(DATASET_CONFIGS), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise error(f"{origin} {dataset}: unknown dataset; {hint}(known: {names}, or a "
                "folder of class subfolders)")


def as_run_config(config):
    """A `RunConfig` as is; a mapping (flat, as a run's `config.yaml`) over
    the built-in defaults, checked. What `trainer.train` accepts."""
    if isinstance(config, RunConfig):
        return config
    flat = copy.deepcopy(DEFAULTS)
    update = {k: v for k, v in dict(config).items() if k != "config_file"}
    _merge(flat, update, "config")
    validate(flat, "config")
    return RunConfig.from_dict(flat, config_file=dict(config).get("config_file"))


def dump(config, path):
    """Writes the resolved config as YAML (atomically)."""
    atomic_write_text(path, to_yaml(config))


def to_yaml(config):
    return yaml.safe_dump(config, sort_keys=False)
