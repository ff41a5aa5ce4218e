import copy

import keras
from keras import ops

from keras_amb.layers import conv2d
from keras_amb.layers.stage_branch import StageBranch


@keras.saving.register_keras_serializable(package="keras_amb")
class AttentionBranch(StageBranch):
    """ABN's attention branch: the attention map and the branch's logits.

    On the feature map F of the feature extractor: an unshared, stride-1 copy
    of the backbone's last stage, BN, 1x1 conv to K channels (no bias), BN,
    ReLU. From those K class maps come
    - the attention map A: 3x3 conv K->1 (no bias), BN, sigmoid; `(N, H, W, 1)`
      in `(0, 1)`, at F's resolution;
    - the attention-branch logits: 1x1 conv K->K (no bias), global average
      pooling; trained with L_att = CE(labels, logits);
    - the pooled class maps (GAP of the K channels), the attention module's
      feature for the prototype conformity loss.

    Args: those of `StageBranch`.

    Example:
    >>> branch = AttentionBranch(num_classes=5, stage_filters=8, stage_blocks=1,
    ...                          bottleneck=False)
    >>> out = branch(keras.ops.ones((2, 6, 6, 4)))
    >>> out["attention"].shape, out["logits"].shape, out["features"].shape
    ((2, 6, 6, 1), (2, 5), (2, 5))
    """

    stride = 1
    stage_name = "attention_conv5"

    def __init__(self, num_classes, **kwargs):
        super().__init__(num_classes, **kwargs)

        # === Layers ===
        def conv(filters, kernel_size, name):
            return conv2d.Conv2D(
                filters,
                kernel_size,
                padding="same",
                use_bias=False,
                kernel_initializer=keras.initializers.get(
                    copy.deepcopy(self.kernel_initializer)
                ),
                dtype=self.dtype_policy,
                name=name,
            )

        self.stage_bn = self.batch_normalization("attention_stage_bn")
        self.class_conv = conv(self.num_classes, 1, "attention_class_conv")
        self.class_bn = self.batch_normalization("attention_class_bn")
        self.map_conv = conv(1, 3, "attention_map_conv")
        self.map_bn = self.batch_normalization("attention_map_bn")
        self.logits_conv = conv(self.num_classes, 1, "attention_logits_conv")

    def build(self, input_shape):
        shape = self.build_stage(input_shape)
        self.stage_bn.build(shape)
        self.class_conv.build(shape)
        shape = shape[:-1] + (self.num_classes,)
        self.class_bn.build(shape)
        self.map_conv.build(shape)
        self.map_bn.build(shape[:-1] + (1,))
        self.logits_conv.build(shape)

    @property
    def map_variables(self):
        """The trainable weights the attention map depends on (all but the
        logits head)."""
        logits = {id(v) for v in self.logits_conv.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in logits]

    def call(self, features, training=None):
        x = self.stage_bn(self.run_stage(features, training), training=training)
        class_maps = ops.relu(self.class_bn(self.class_conv(x), training=training))
        attention = self.map_bn(self.map_conv(class_maps), training=training)
        attention = ops.sigmoid(ops.cast(attention, "float32"))
        logits = ops.mean(self.logits_conv(class_maps), axis=(1, 2))
        pooled = ops.mean(class_maps, axis=(1, 2))
        return {
            "attention": attention,
            "logits": ops.cast(logits, "float32"),
            "features": ops.cast(pooled, "float32"),
        }

    def compute_output_spec(self, features, training=None):
        n, h, w = features.shape[0], features.shape[1], features.shape[2]
        k = self.num_classes
        return {
            "attention": keras.KerasTensor((n, h, w, 1), dtype="float32"),
            "logits": keras.KerasTensor((n, k), dtype="float32"),
            "features": keras.KerasTensor((n, k), dtype="float32"),
        }
