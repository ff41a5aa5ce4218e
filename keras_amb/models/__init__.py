"""ABN and the proposed model, and their ResNet backbones."""

from keras_amb.models.attention_branch_network import AttentionBranchNetwork
from keras_amb.models.attention_branch_network import AttentionMiningNetwork
from keras_amb.models.attention_branch_network import NonFiniteLossError
from keras_amb.models.backbones import BACKBONES
from keras_amb.models.backbones import WeightsUnavailableError

__all__ = [
    "AttentionBranchNetwork",
    "AttentionMiningNetwork",
    "BACKBONES",
    "NonFiniteLossError",
    "WeightsUnavailableError",
]
