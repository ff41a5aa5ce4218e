"""The model's arguments: their choices, limits, checks and old names.

One Keras-free module that the model's constructor and `from_config`, the
config reader (`keras_amb.app.config`), the model-file reader
(`keras_amb.model_file`) and the command line's choices all read, so a bad
value is refused the same way from each, and reading a config or `--help`
imports no Keras.

Example:

```python
from keras_amb import arguments

arguments.check_arguments(mask_threshold=0.4, cot=True, amb=True)
arguments.check_arguments(mask_threshold=1.5)
# ValueError: `mask_threshold` must be a number in [0, 1]. Received: mask_threshold=1.5
```
"""

from keras_amb.backbone_specs import BACKBONES as BACKBONE_SPECS

# `keras-amb train --architecture`: "abn" stops after the ABN; "mining"
# pre-trains one, then trains the Attention Mining Network (the paper's
# proposed model: AMB + PC + COT) from it. Also the stages' names.
ARCHITECTURES = ("abn", "mining")
# The paper's word, keras-amb's name for "mining" before 0.3: configs, run
# folders and checkpoints that use it keep working (stated removal: 2.0).
OLD_ARCHITECTURES = {"proposed": "mining"}


def architecture_name(value):
    """Today's name of an architecture or stage (`"proposed"` is `"mining"`).

    Example:
    >>> architecture_name("proposed"), architecture_name("abn")
    ('mining', 'abn')
    """
    return OLD_ARCHITECTURES.get(value, value)
# The backbones `keras_amb.models.backbones` builds, from their one table.
BACKBONES = tuple(BACKBONE_SPECS)
# The optimizers a config's `optimizer.name` (and `train --optimizer`) names.
OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
# PC's distance: eq. 3's norm, or its square as in the PC authors' code.
PC_DISTANCES = ("euclidean", "squared")
# Which weights the mining terms (L_am, and COT's step on the masked
# features) update: "all" that feed the AMB output (the paper), or only the
# attention branch's map weights ("attention": the attention must grow to
# cover the evidence; the shared perception branch cannot unlearn it).
AMB_GRADIENTS = ("all", "attention")
# Where the attention map is min-max normalised per image (METHOD.md, "The
# map's objective"): nowhere, before the mining mask T(A) only, or before
# both T(A) and the attention mechanism (the map the model uses and shows is
# then the normalised one).
MAP_NORMALIZATIONS = ("none", "mask", "all")

# Upper limits that bound what one image costs at inference: the shorter side
# is resized to `image_size * resize_ratio` before the center crop, so both
# are capped (in configs and in model files, which are checked on loading).
MAX_IMAGE_SIZE = 1024
MAX_RESIZE_RATIO = 2.0

# Config keys that are model arguments of the same name
# (`keras_amb.models.factory.build_model`).
MODEL_KEYS = (
    "backbone", "image_size", "amb", "pc", "cot", "mask_threshold", "mask_slope",
    "hard_mask", "amb_weight", "pc_weight", "pc_contrastive_weight",
    "center_lr_multiplier", "naive_bn_statistics", "dropout", "amb_gradient",
    "pc_distance", "area_weight", "area_target", "smoothness_weight",
    "map_normalization", "erasing_weight",
)
# The map terms (ours, not the paper's) and their off values: an ABN stage
# never uses them, and `describe` names the ones that are on.
MAP_TERMS = {
    "area_weight": 0.0, "area_target": 0.0, "smoothness_weight": 0.0,
    "map_normalization": "none", "erasing_weight": 0.0,
}
# The paper's objective (eq. 5, the mining terms updating every weight that
# feeds the AMB), which `keras-amb train --paper-objective` restores over a
# config's map terms.
PAPER_OBJECTIVE = {**MAP_TERMS, "amb_gradient": "all"}
# The default objective (METHOD.md, "The default objective"): the map's
# area term, and the mining terms moving the map alone.
DEFAULT_OBJECTIVE = {"area_weight": 1.0, "amb_gradient": "attention"}

# Every model argument's default, written once. `AttentionBranchNetwork`
# (the paper's ABN) takes `ABN_DEFAULTS`; `AttentionMiningNetwork` (the
# proposed model) `MINING_DEFAULTS`; the config's model section
# (`run_config.ModelConfig`) and the model-file reader (`model_file`)
# derive theirs from these. A bundled config states the values tuned for its
# dataset (`configs/synthetic.yaml`: `pc_weight: 0.1`).
ABN_DEFAULTS = {
    "backbone": "resnet50", "image_size": 224, "bypass": True, "amb": False, "pc": False,
    "cot": False, "mask_threshold": 0.5, "mask_slope": 10.0, "hard_mask": False,
    "amb_weight": 1e-4, "amb_gradient": "all", "pc_weight": 1.0, "pc_contrastive_weight": 1e-4,
    "pc_distance": "euclidean", "center_lr_multiplier": 1.0, "attention_target_weight": 0.0,
    **MAP_TERMS, "naive_bn_statistics": False, "dropout": 0.0, "bn_momentum": 0.9,
    "class_names": None, "resize_ratio": 1.0,
}
MINING_SWITCHES = {"bypass": False, "amb": True, "pc": True, "cot": True}
MINING_DEFAULTS = {**ABN_DEFAULTS, **MINING_SWITCHES, **DEFAULT_OBJECTIVE}

# Constructor arguments renamed since the first release (old: new), accepted
# when loading the model files of earlier releases (0.1); kept through 1.x,
# removed in 2.0 (docs/development.md, "Compatibility shims").
LEGACY_ARGUMENTS = {
    "mining": "amb",
    "prototype_conformity": "pc",
    "complement_objective": "cot",
    "mining_weight": "amb_weight",
}
# Arguments added after the first release, and the value a model file saved
# before each existed was trained with (its behaviour then): a file that
# lacks one gets this, not today's default.
PREDATING = dict(PAPER_OBJECTIVE)


def saved_arguments(arguments):
    """A saved model's constructor arguments (`config.json`'s `"config"`)
    as today's constructor takes them: old names mapped
    (`LEGACY_ARGUMENTS`), arguments the file predates at the values it was
    trained with (`PREDATING`). The model's `from_config` and the
    model-file reader both call it.

    Example:
    >>> saved_arguments({"mining": True})["amb"], saved_arguments({})["area_weight"]
    (True, 0.0)
    """
    arguments = {LEGACY_ARGUMENTS.get(key, key): value for key, value in arguments.items()}
    return {**PREDATING, **arguments}


def is_number(value):
    """An int or a float, not a bool (YAML's `yes` is no number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value):
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def as_table_type(name, value):
    """`value` of the model argument `name` as its default's type in
    `ABN_DEFAULTS` (a float default gives a float, an int one an int; other
    values as given).

    Example:
    >>> as_table_type("amb_weight", 1), as_table_type("image_size", 64.0)
    (1.0, 64)
    """
    default = ABN_DEFAULTS[name]
    if isinstance(default, float):
        return float(value)
    if is_int(default):
        return int(value)
    return value


# One check per argument: (test, what a good value is).
CHECKS = {
    "num_classes": (lambda v: is_number(v) and int(v) == v and v >= 2, "an int >= 2"),
    "image_size": (lambda v: is_number(v) and int(v) == v and 16 <= v <= MAX_IMAGE_SIZE,
                   f"an int in [16, {MAX_IMAGE_SIZE}]"),
    "mask_threshold": (lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "mask_slope": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "amb_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "pc_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "pc_contrastive_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "center_lr_multiplier": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "attention_target_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "area_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "area_target": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "smoothness_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "erasing_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "map_normalization": (lambda v: v in MAP_NORMALIZATIONS,
                          f"one of {MAP_NORMALIZATIONS}"),
    "dropout": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "resize_ratio": (lambda v: is_number(v) and 1 <= v <= MAX_RESIZE_RATIO,
                     f"a number in [1, {MAX_RESIZE_RATIO:g}]"),
    "backbone": (lambda v: v in BACKBONES, f"one of {BACKBONES}"),
    "pc_distance": (lambda v: v in PC_DISTANCES, f"one of {PC_DISTANCES}"),
    "amb_gradient": (lambda v: v in AMB_GRADIENTS, f"one of {AMB_GRADIENTS}"),
}
for _flag in ("bypass", "amb", "pc", "cot", "hard_mask", "naive_bn_statistics"):
    CHECKS[_flag] = (lambda v: isinstance(v, bool), "true or false")


def check_arguments(**arguments):
    """Checks model arguments; raises `ValueError` quoting the first bad one.

    Arguments without a check pass; `cot=True` needs `amb=True`.

    Example:
    >>> check_arguments(mask_threshold=0.4, cot=True, amb=True)
    >>> check_arguments(mask_threshold=1.5)
    Traceback (most recent call last):
    ...
    ValueError: `mask_threshold` must be a number in [0, 1]. Received: mask_threshold=1.5
    """
    for name, value in arguments.items():
        if name in CHECKS and not CHECKS[name][0](value):
            raise ValueError(
                f"`{name}` must be {CHECKS[name][1]}. Received: {name}={value!r}"
            )
    if arguments.get("cot") and not arguments.get("amb", True):
        raise ValueError(
            "`cot=True` trains the attention mining branch and needs `amb=True`. "
            "Received: amb=False"
        )
