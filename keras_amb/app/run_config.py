"""A run's configuration as four typed sections: data, model, schedule, runtime.

`keras_amb.app.config.resolve` builds one `RunConfig` from the built-in
defaults, a YAML file and the command line, checks it, and hands each part
of keras-amb only the section it needs: the data layer gets `config.data`,
the model factory `config.model`, the optimizer and learning-rate schedule
`config.schedule`, seeding and devices `config.runtime`.

The YAML files (the bundled configs and every run's `config.yaml`) keep
their flat format: a section's fields are top-level keys of the same name
(`pc_weight: 0.1`, not `model: {pc_weight: 0.1}`), and `to_dict` /
`from_dict` convert between the two. The field defaults here are the
built-in defaults (`keras_amb.app.config.DEFAULTS` is read from them), so the
list of keys is written once.

This module imports neither Keras nor YAML.

Example:

```python
from keras_amb.app import config

cfg = config.resolve("synthetic_v2", {"epochs": 2})
cfg.model.pc_weight, cfg.schedule.epochs, cfg.data.image_size  # (0.1, 2, 64)
variant = cfg.replace(pc=False, seed=1)   # flat keys, routed to their sections
variant.to_dict()["pc"]                   # False: the YAML form
```
"""

import copy
import dataclasses

# The model arguments' defaults are the proposed model's own, written once
# in `arguments` (a bundled config states what it tunes).
from keras_amb.arguments import MINING_DEFAULTS as _M


def _default(value):
    """A mutable default (dict, list), copied for each instance."""
    return dataclasses.field(default_factory=lambda: copy.deepcopy(value))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What is read and how it is prepared.

    Args:
        dataset: "synthetic", a TFDS name or a folder of class subfolders.
        data_dir: TFDS's data folder (None: TFDS's default).
        skip_bad_images: leave out unreadable images instead of stopping.
        synthetic: the built-in generator's parameters (`version`, ...).
        image_size: the input side in pixels (also the model's input size).
        batch_size: the (global) batch size.
        crop_scale: `[min, max]` area fraction of the training crops.
        flip: random horizontal flips in training.
        resize_ratio: shorter side / image_size before the center crop at
            evaluation (None: the dataset's own).
        cache: keep decoded images in memory after the first epoch.
        attention_targets: "masks", a folder of corrected maps, or None.
    """

    dataset: str = "synthetic"
    data_dir: str = None
    skip_bad_images: bool = False
    synthetic: dict = _default({})
    image_size: int = 64
    batch_size: int = 32
    crop_scale: list = _default([0.35, 1.0])
    flip: bool = True
    resize_ratio: float = None
    cache: bool = False
    attention_targets: str = None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which model, and its arguments (the model's constructor arguments of
    the same names, checked by `keras_amb.arguments`).

    Args:
        architecture: "abn" (stop after the ABN) or "mining" (then the
            Attention Mining Network; "proposed", its old name, is read as it).
        backbone: one of `keras_amb.arguments.BACKBONES`.
        weights: backbone weights: "imagenet", a file, or None.
        init_from: an ABN run (or .keras file) to start the Attention Mining Network
            from, skipping pre-training.
        amb, pc, cot: the ablation switches.
        mask_threshold, mask_slope, hard_mask: the AMB's mask T(A).
        amb_weight, amb_gradient: L_am's weight and the weights the mining
            terms update (the default, "attention": the map's alone; the
            paper: "all").
        pc_weight, pc_contrastive_weight, pc_distance, center_lr_multiplier:
            the PC loss: `pc_weight` weighs the whole loss in eq. 5,
            `pc_contrastive_weight` its contrastive part inside it.
        area_weight, area_target, smoothness_weight, map_normalization,
            erasing_weight: the map terms (ours, not the paper's; 0 and
            "none" are off): the map's area, its total variation, min-max
            normalisation, and CE on the erased features. The default adds
            the area term at weight 1 (METHOD.md, "The default objective").
        naive_bn_statistics: let the AMB and COT passes update batch norm.
        attention_target_weight: the attention-target loss's weight (on
            when `data.attention_targets` is set).
        dropout: dropout before the perception branch's classifier.
    """

    architecture: str = "mining"
    backbone: str = _M["backbone"]
    weights: str = None
    init_from: str = None
    amb: bool = _M["amb"]
    pc: bool = _M["pc"]
    cot: bool = _M["cot"]
    mask_threshold: float = _M["mask_threshold"]
    mask_slope: float = _M["mask_slope"]
    hard_mask: bool = _M["hard_mask"]
    amb_weight: float = _M["amb_weight"]
    amb_gradient: str = _M["amb_gradient"]
    pc_weight: float = _M["pc_weight"]
    pc_contrastive_weight: float = _M["pc_contrastive_weight"]
    pc_distance: str = _M["pc_distance"]
    center_lr_multiplier: float = _M["center_lr_multiplier"]
    area_weight: float = _M["area_weight"]
    area_target: float = _M["area_target"]
    smoothness_weight: float = _M["smoothness_weight"]
    map_normalization: str = _M["map_normalization"]
    erasing_weight: float = _M["erasing_weight"]
    naive_bn_statistics: bool = _M["naive_bn_statistics"]
    # Not the constructor's argument of that name (the loss's weight in the
    # model, 0: off) but the weight it gets when `data.attention_targets`
    # is set (`models.factory`); without targets the model gets 0.
    attention_target_weight: float = 10.0
    dropout: float = _M["dropout"]


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """How long and how fast each stage trains.

    Args:
        pretrain_epochs: epochs of ABN pre-training before the Attention Mining Network.
        epochs: epochs of the final stage.
        optimizer: `{name, learning_rate, momentum, nesterov, weight_decay}`.
        lr_schedule: `{name: step | cosine | constant, milestones, gamma}`.
    """

    pretrain_epochs: int = 8
    epochs: int = 8
    optimizer: dict = _default({
        "name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-4,
    })
    lr_schedule: dict = _default({"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1})


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how reproducibly it runs.

    Args:
        seed: seeds data order, augmentation and initialisation.
        deterministic: deterministic TensorFlow ops (slower).
        mixed_precision: None, "mixed_float16" or "mixed_bfloat16".
        distribute: data-parallel over every device.
        jit_compile: "auto", True or False.
        attention_images: validation images whose maps go to TensorBoard.
        backend: the Keras backend the run was trained with (None: default).
    """

    seed: int = 0
    deterministic: bool = False
    mixed_precision: str = None
    distribute: bool = False
    jit_compile: object = "auto"
    attention_images: int = 4
    backend: str = None


# Section name -> its class, in the order `to_dict` writes them.
SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "schedule": ScheduleConfig,
    "runtime": RuntimeConfig,
}
# Config key -> the section that holds it.
SECTION_OF = {
    field.name: name
    for name, cls in SECTIONS.items()
    for field in dataclasses.fields(cls)
}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A resolved configuration: `data`, `model`, `schedule`, `runtime`.

    Build it with `keras_amb.app.config.resolve` (which checks every value);
    `from_dict` only sorts keys into sections.

    Args:
        data: `DataConfig`.
        model: `ModelConfig`.
        schedule: `ScheduleConfig`.
        runtime: `RuntimeConfig`.
        config_file: the YAML file it was read from, or None (not part of
            `to_dict`: a run's `config.yaml` is the config itself).

    Example:

    ```python
    cfg = RunConfig.from_dict({"epochs": 3, "pc": False})
    cfg.schedule.epochs, cfg.model.pc   # (3, False)
    ```
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    config_file: str = None

    @classmethod
    def from_dict(cls, flat, config_file=None):
        """The sections of a flat mapping (YAML form); missing keys keep
        their defaults. Raises `ValueError` naming an unknown key."""
        parts = {name: {} for name in SECTIONS}
        for key, value in flat.items():
            if key not in SECTION_OF:
                raise ValueError(
                    f"Unknown config key {key!r}. Known keys: {', '.join(sorted(SECTION_OF))}"
                )
            parts[SECTION_OF[key]][key] = copy.deepcopy(value)
        sections = {name: SECTIONS[name](**values) for name, values in parts.items()}
        return cls(config_file=config_file, **sections)

    def to_dict(self):
        """The flat mapping written as YAML (section by section)."""
        flat = {}
        for name in SECTIONS:
            flat.update(copy.deepcopy(dataclasses.asdict(getattr(self, name))))
        return flat

    def replace(self, **changes):
        """A copy with flat keys changed, each in its own section (a mapping
        such as `optimizer` is replaced whole). Raises `ValueError` naming
        an unknown key.

        The values are not checked: a config built from user input goes
        through `keras_amb.app.config.resolve`."""
        grouped = {}
        for key, value in changes.items():
            if key not in SECTION_OF:
                raise ValueError(
                    f"Unknown config key {key!r}. Known keys: {', '.join(sorted(SECTION_OF))}"
                )
            grouped.setdefault(SECTION_OF[key], {})[key] = copy.deepcopy(value)
        sections = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in grouped.items()
        }
        return dataclasses.replace(self, **sections)
