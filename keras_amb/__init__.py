"""keras-amb: attention maps that explain, with an Attention Mining Branch.

ABN (Fukui et al., CVPR 2019) improved by an Attention Mining Branch,
Prototype Conformity loss and Complement Objective Training, in Keras 3 for
the TensorFlow, JAX and PyTorch backends.
"""

__version__ = "0.1.0"

from keras_amb import losses
from keras_amb.models import AttentionBranchNetwork
from keras_amb.models import AttentionMiningNetwork
from keras_amb.optimizers import DualOptimizer
