"""ABN and the proposed model, their ResNet backbones, and the factory that
builds them from a config."""

from keras_amb.arguments import check_arguments
from keras_amb.errors import NonFiniteLossError
from keras_amb.models.attention_branch_network import AttentionBranchNetwork
from keras_amb.models.attention_mining_network import AttentionMiningNetwork
from keras_amb.models.backbones import BACKBONES
from keras_amb.models.backbones import WeightsUnavailableError
from keras_amb.models.factory import build_model

__all__ = [
    "AttentionBranchNetwork",
    "AttentionMiningNetwork",
    "BACKBONES",
    "NonFiniteLossError",
    "WeightsUnavailableError",
    "build_model",
    "check_arguments",
]
