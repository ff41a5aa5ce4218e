"""Fast backend kernels for two layers, and nothing else.

Keras's generic code for these two layers costs more than their arithmetic
on some backends (measured on a ResNet-50 ABN train step, PyTorch backend:
about 70% of the step outside the convolutions, against 25% in the official
PyTorch ABN):

- Batch normalisation is composed of elementwise ops (moments, subtract,
  multiply, ...), each a pass over the activations, forward and backward.
  TensorFlow and PyTorch have one fused kernel each; `batch_norm` uses it
  and returns the batch's (biased) mean and variance, so the layer keeps
  Keras's moving-average update exactly. JAX compiles the composed ops
  into fused loops itself and keeps Keras's code.
- Keras's PyTorch convolution copies its NHWC input to an NCHW tensor and
  then again to channels-last memory, every call. An NHWC tensor already is
  an NCHW tensor in channels-last memory (a permuted view), which PyTorch's
  oneDNN convolution takes as is: `conv2d_channels_last` does no copy.

Each function returns None where it does not apply; the layer then runs
Keras's own code.
"""

import keras

_BACKEND = keras.backend.backend()


def batch_norm(x, gamma, beta, epsilon, training, moving_mean=None, moving_variance=None):
    """Fused batch normalisation over the last axis of a 4D tensor.

    Args:
        x: `(N, H, W, C)` float32 tensor.
        gamma, beta: `(C,)` scale and offset.
        epsilon: float.
        training: bool, normalise with the batch's statistics (and return
            them) or with `moving_mean` / `moving_variance`.

    Returns:
        `(y, mean, variance)` (the batch's biased statistics in training,
        else None, None), or None where no fused kernel is used.
    """
    if len(x.shape) != 4:
        return None
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        if training:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=epsilon, data_format="NHWC", is_training=True
            )
            # The kernel returns the unbiased (n - 1) variance for the moving
            # average; Keras averages the biased one.
            shape = tf.shape(x)
            count = tf.cast(shape[0] * shape[1] * shape[2], variance.dtype)
            return y, mean, variance * (count - 1.0) / tf.maximum(count, 1.0)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, mean=moving_mean, variance=moving_variance,
            epsilon=epsilon, data_format="NHWC", is_training=False,
        )
        return y, None, None
    if _BACKEND == "torch":
        import torch

        view = x.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: no copy
        if training:
            out, mean, invstd = torch.native_batch_norm(
                view, gamma, beta, None, None, True, 0.0, epsilon
            )
            variance = 1.0 / invstd.square() - epsilon
            return out.permute(0, 2, 3, 1), mean, variance
        out = torch.nn.functional.batch_norm(
            view, moving_mean, moving_variance, gamma, beta, False, 0.0, epsilon
        )
        return out.permute(0, 2, 3, 1), None, None
    return None


def _same_padding(size, kernel, stride, dilation):
    """TensorFlow's 'same' padding of one spatial axis: (before, after)."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def conv2d_channels_last(x, kernel, strides, padding, dilation_rate, groups=1):
    """A PyTorch 2D convolution of an NHWC tensor without copying it.

    Args:
        x: `(N, H, W, C)` torch tensor; kernel: `(kh, kw, C / groups, O)`.
        strides, dilation_rate: pairs of ints; padding: "same" or "valid".

    Returns:
        The `(N, H', W', O)` output, or None on other backends.
    """
    if _BACKEND != "torch" or len(x.shape) != 4:
        return None
    import torch
    import torch.nn.functional as F

    x, kernel = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(kernel)
    view = x.permute(0, 3, 1, 2)
    weight = kernel.permute(3, 2, 0, 1)
    if weight.dtype == torch.float32:
        weight = weight.contiguous(memory_format=torch.channels_last)
    else:
        # Half precision on a CPU without oneDNN's bfloat16 (no AVX512-BF16)
        # falls back to `slow_conv2d`, whose backward refuses a channels-last
        # weight gradient (a 3x3 conv to one channel, the attention map's,
        # failed so on an AVX2 CPU): a plain contiguous weight there.
        weight = weight.contiguous()
    pad = 0
    if padding == "same":
        pads = [
            _same_padding(size, k, s, d)
            for size, k, s, d in zip(view.shape[2:], weight.shape[2:], strides, dilation_rate)
        ]
        if all(before == after for before, after in pads):
            pad = tuple(before for before, _ in pads)
        else:  # strided 'same' on an even size: one more row/column at the end
            view = F.pad(view, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    out = F.conv2d(view, weight, None, tuple(strides), pad, tuple(dilation_rate), groups)
    return out.permute(0, 2, 3, 1)
