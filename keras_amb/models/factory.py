"""The model of a config: one function, the config's keys as arguments."""

from keras_amb.arguments import MODEL_KEYS
from keras_amb.models.attention_branch_network import AttentionBranchNetwork
from keras_amb.models.attention_branch_network import AttentionMiningNetwork


def build_model(config, architecture, class_names, resize_ratio=None):
    """`AttentionBranchNetwork` (`"abn"`) or `AttentionMiningNetwork`
    (`"proposed"`) with the config's arguments and the data's class names.

    For `"abn"` the proposed model's switches (`amb`, `pc`, `cot`) do not
    apply; its attention-target loss is on when the config names
    `attention_targets`.
    """
    arguments = {k: config[k] for k in MODEL_KEYS}
    arguments.update(
        num_classes=len(class_names),
        class_names=list(class_names),
        resize_ratio=float(resize_ratio or config.get("resize_ratio") or 1.0),
    )
    if architecture == "abn":
        for switch in ("amb", "pc", "cot"):
            arguments.pop(switch)
        weight = config["attention_target_weight"] if config.get("attention_targets") else 0.0
        return AttentionBranchNetwork(attention_target_weight=weight, **arguments)
    return AttentionMiningNetwork(**arguments)
