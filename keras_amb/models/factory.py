"""The model of a config's model section: one function."""

import dataclasses

from keras_amb.arguments import MAP_TERMS
from keras_amb.arguments import MODEL_KEYS
from keras_amb.models.attention_branch_network import AttentionBranchNetwork
from keras_amb.models.attention_mining_network import AttentionMiningNetwork


def build_model(model, architecture, class_names, image_size, resize_ratio=None,
                attention_targets=False):
    """`AttentionBranchNetwork` (`"abn"`) or `AttentionMiningNetwork`
    (`"mining"`) with a config's model arguments and the data's class names.

    Args:
        model: `keras_amb.app.run_config.ModelConfig`, the config's model section.
        architecture: "abn" or "mining" (a mining run pre-trains an ABN
            first, so this is the stage's, not always `model.architecture`).
        class_names: the dataset's class names.
        image_size: int, the input side (the data section's `image_size`).
        resize_ratio: float or None (1.0), recorded for preprocessing.
        attention_targets: bool, the run trains against attention targets:
            the ABN's attention-target loss is on at
            `model.attention_target_weight`.

    For `"abn"` the proposed model's switches (`amb`, `pc`, `cot`) and
    the map terms (`area_weight`, ...) do not apply.
    """
    cls, arguments = model_arguments(model, architecture, class_names, image_size,
                                     resize_ratio, attention_targets)
    return cls(**arguments)


def model_arguments(model, architecture, class_names, image_size, resize_ratio=None,
                    attention_targets=False):
    """`(class, constructor arguments)` that `build_model` builds from (a
    resumed run compares them with its checkpoints' before training)."""
    fields = dataclasses.asdict(model)
    arguments = {k: fields[k] for k in MODEL_KEYS if k != "image_size"}
    arguments.update(
        image_size=image_size,
        num_classes=len(class_names),
        class_names=list(class_names),
        resize_ratio=float(resize_ratio or 1.0),
    )
    if architecture == "abn":
        for switch in ("amb", "pc", "cot"):
            arguments.pop(switch)
        arguments.update(MAP_TERMS)  # the baseline: the paper's ABN
        weight = model.attention_target_weight if attention_targets else 0.0
        return AttentionBranchNetwork, dict(attention_target_weight=weight, **arguments)
    return AttentionMiningNetwork, arguments
