"""The checks of a merged experiment config: one per key, each error naming
where the bad value came from (the config file or the command-line option)
and the key. Model arguments are checked by the model's own checks
(`keras_amb.arguments.check_arguments`)."""

from keras_amb.arguments import ARCHITECTURES
from keras_amb.arguments import OPTIMIZER_NAMES
from keras_amb.arguments import is_int
from keras_amb.arguments import is_number
from keras_amb.errors import CommandLineError
from keras_amb.errors import ConfigError
from keras_amb.schedules import NAMES as SCHEDULES

# The `optimizer:` section's keys (`keras_amb.optimizers.make_optimizer`
# builds each named optimizer) and the `lr_schedule:` section's.
OPTIMIZER_KEYS = ("name", "learning_rate", "momentum", "nesterov", "weight_decay")
SCHEDULE_KEYS = ("name", "milestones", "gamma")


def option_name(key):
    """The `keras-amb train` option that sets a config key."""
    if key == "optimizer.learning_rate":
        return "--learning-rate"
    return "--" + key.replace("_", "-")


def _check_synthetic(params, check):
    """Types and ranges of a `synthetic:` mapping (the generator's own
    checks follow in `keras_amb.data.synthetic.make_config`)."""
    import dataclasses

    from keras_amb.data import synthetic

    version = str(params.get("version", "1"))
    check(version in synthetic.VERSIONS, "synthetic.version", params.get("version"),
          f"one of {synthetic.VERSIONS}")
    cls = synthetic.config_class(version)
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    for key, value in params.items():
        if key == "version" or key not in fields:
            continue  # unknown keys: make_config lists the known ones
        default = fields[key]
        if key == "train_size":
            check(is_int(value) and value > 0, f"synthetic.{key}", value, "a positive integer")
        elif is_int(default):
            check(is_int(value) and value >= 0, f"synthetic.{key}", value, "an integer >= 0")
        elif isinstance(default, float):
            check(is_number(value) and value >= 0, f"synthetic.{key}", value, "a number >= 0")


def validate(config, source="config", given=()):
    """Checks every key's type and range; raises `ConfigError` naming where
    the bad value came from and the key.

    Args:
        config: dict, a merged config.
        source: str, the config file (or "command line").
        given: keys (`optimizer.learning_rate` for nested ones) that the
            command line set, mapped to the option that set them (or a set
            of keys, named `--key-name`): an error in one names its option.

    Model arguments are checked by the model's own checks
    (`keras_amb.arguments.check_arguments`).
    """
    from keras_amb.arguments import MODEL_KEYS
    from keras_amb.arguments import check_arguments

    if not isinstance(given, dict):
        given = {key: option_name(key) for key in given}

    def where(key):
        top = key.split(".")[0]
        if key in given or top in given:
            return "command line", given.get(key) or given[top]
        return source, key

    def check(condition, key, value, expected):
        if not condition:
            origin, name = where(key)
            error = CommandLineError if origin == "command line" else ConfigError
            raise error(f"{origin}: {name} must be {expected}, got {value!r}")

    def optional_text(key):
        value = config[key]
        check(value is None or (isinstance(value, str) and value), key, value,
              "a non-empty string or null")

    for key in ("image_size", "batch_size", "epochs"):
        value = config[key]
        check(is_int(value) and value > 0, key, value, "a positive integer")
    value = config["pretrain_epochs"]
    check(is_int(value) and value >= 0, "pretrain_epochs", value, "an integer >= 0")
    check(isinstance(config["dataset"], str) and config["dataset"], "dataset",
          config["dataset"], "a dataset name or folder")
    for key in ("data_dir", "weights", "init_from", "attention_targets"):
        optional_text(key)
    for key in ("skip_bad_images", "flip", "cache", "deterministic", "distribute"):
        check(isinstance(config[key], bool), key, config[key], "true or false")
    check(config["jit_compile"] in ("auto", True, False) and not is_int(config["jit_compile"]),
          "jit_compile", config["jit_compile"], "auto, true or false")
    seed = config["seed"]
    check(is_int(seed) and 0 <= seed < 2**31, "seed", seed, "an integer in [0, 2**31)")
    value = config["attention_images"]
    check(is_int(value) and value >= 0, "attention_images", value, "an integer >= 0")
    check(config["architecture"] in ARCHITECTURES, "architecture",
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
        key = str(error).split("`")[1] if str(error).count("`") >= 2 else None
        origin, name = where(key) if key in config else (source, key)
        message = str(error).replace(f"`{key}`", name, 1).replace("`", "")
        error = CommandLineError if origin == "command line" else ConfigError
        raise error(f"{origin}: {message}") from None

    def section(key, keys, names, example):
        """A mapping with a known `name` and only `keys`; returns it."""
        value = config[key]
        check(isinstance(value, dict), key, value, f"a mapping ({example}) or one of {names}")
        unknown = sorted(set(value) - set(keys))
        check(not unknown, key, unknown, f"a mapping of {', '.join(keys)} (unknown keys listed)")
        check(value.get("name") in names, f"{key}.name", value.get("name"), f"one of {names}")
        return value

    optimizer = section("optimizer", OPTIMIZER_KEYS, OPTIMIZER_NAMES,
                        "{name: sgd, learning_rate: 0.05, ...}")
    lr = optimizer.get("learning_rate")
    check(is_number(lr) and lr > 0, "optimizer.learning_rate", lr, "a number > 0")
    momentum = optimizer.get("momentum", 0.0)
    check(is_number(momentum) and 0 <= momentum < 1, "optimizer.momentum", momentum,
          "a number in [0, 1)")
    check(isinstance(optimizer.get("nesterov", False), bool), "optimizer.nesterov",
          optimizer.get("nesterov"), "true or false")
    decay = optimizer.get("weight_decay")
    check(decay is None or (is_number(decay) and decay >= 0), "optimizer.weight_decay", decay,
          "a number >= 0")
    schedule = section("lr_schedule", SCHEDULE_KEYS, SCHEDULES,
                       "{name: step, milestones: [0.5, 0.75], gamma: 0.1}")
    milestones = schedule.get("milestones", [])
    check(isinstance(milestones, list) and all(is_number(m) and 0 < m < 1 for m in milestones),
          "lr_schedule.milestones", milestones, "a list of fractions of the stage in (0, 1)")
    gamma = schedule.get("gamma", 0.1)
    check(is_number(gamma) and gamma > 0, "lr_schedule.gamma", gamma, "a number > 0")
    scale = config["crop_scale"]
    check(
        isinstance(scale, (list, tuple)) and len(scale) == 2
        and all(is_number(s) for s in scale) and 0 < scale[0] <= scale[1] <= 1,
        "crop_scale", scale, "[min, max] with 0 < min <= max <= 1",
    )
    check(config["mixed_precision"] in (None, "mixed_float16", "mixed_bfloat16"),
          "mixed_precision", config["mixed_precision"], "mixed_float16 or mixed_bfloat16")
    check(config["backend"] in (None, "tensorflow", "jax", "torch"), "backend",
          config["backend"], "tensorflow, jax or torch")
    check(isinstance(config["synthetic"], dict), "synthetic", config["synthetic"], "a mapping")
    if config["dataset"] == "synthetic":
        _check_synthetic(config["synthetic"], check)
        from keras_amb.data import synthetic

        try:
            synthetic.make_config(config["synthetic"])
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{where('synthetic')[0]}: synthetic: {error}") from None
    return config
