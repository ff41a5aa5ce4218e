"""The proposed model: `AttentionBranchNetwork` with the paper's
improvements switched on and keras-amb's default objective."""

import keras

from keras_amb.arguments import ABN_DEFAULTS
from keras_amb.arguments import MINING_DEFAULTS
from keras_amb.models.attention_branch_network import AttentionBranchNetwork


@keras.saving.register_keras_serializable(package="keras_amb")
class AttentionMiningNetwork(AttentionBranchNetwork):
    """The proposed model: ABN without bypass, with AMB, PC loss and COT.

    Same arguments as `AttentionBranchNetwork`, with the proposed model's
    defaults (`arguments.MINING_DEFAULTS`, the same as `keras-amb train`'s):
    `bypass=False, amb=True, pc=True, cot=True` as in the paper, and the
    default objective, `area_weight=1.0, amb_gradient="attention"` (METHOD.md,
    "The default objective"). `**arguments.PAPER_OBJECTIVE` gives the
    paper's eq. 5; switch `pc` or `cot` off for the ablations.

    Example:
    >>> abn = AttentionBranchNetwork(num_classes=4, backbone="resnet_tiny",
    ...                              image_size=32)
    >>> model = AttentionMiningNetwork(num_classes=4, backbone="resnet_tiny",
    ...                                image_size=32, mask_threshold=0.4)
    >>> model = model.transfer_weights_from(abn)
    """

    def __init__(self, num_classes, **kwargs):
        # `arguments.MINING_DEFAULTS`: the switches on, the default objective.
        defaults = {k: v for k, v in MINING_DEFAULTS.items() if ABN_DEFAULTS.get(k) != v}
        super().__init__(num_classes, **{**defaults, **kwargs})
