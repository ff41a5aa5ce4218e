"""Shared helpers of the benchmark scripts: timing, memory, FLOP counts."""

import json
import os
import resource
import subprocess
import sys


def timed(fn, repeats=5):
    """Mean seconds of `fn()` over `repeats` calls, after one warm-up call."""
    import time

    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def peak_rss_mib():
    """Peak resident memory of this process so far, MiB (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_device_mib():
    """Peak accelerator memory, MiB, where the backend reports it; else None."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        elif backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                return stats["peak_bytes_in_use"] / 2**20
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.max_memory_allocated() / 2**20
    except Exception:
        return None
    return None


def run_isolated(script, args, env=None, timeout=None):
    """Runs one measurement in a fresh process (clean peak memory); parses its JSON."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    full_env.update(env or {})
    try:
        result = subprocess.run(
            [sys.executable, script] + args, capture_output=True, text=True,
            env=full_env, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{script} {' '.join(args)} took over {timeout:.0f} s")
    for line in reversed(result.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{script} {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def conv_macs(conv, height, width):
    """Multiply-accumulates of a Conv2D at an input size; and its output size."""
    stride = conv.strides[0]
    kh, kw, cin, cout = conv.kernel.shape
    if conv.padding == "same":
        out_h, out_w = -(-height // stride), -(-width // stride)
    else:
        out_h, out_w = (height - kh) // stride + 1, (width - kw) // stride + 1
    return out_h * out_w * kh * kw * cin * cout, out_h, out_w


def block_macs(block, height, width):
    total = 0
    h, w = height, width
    for conv in block.convs:
        macs, h, w = conv_macs(conv, h, w)
        total += macs
    if block.conv_shortcut:
        total += conv_macs(block.shortcut_conv, height, width)[0]
    return total, h, w


def stage_macs(blocks, height, width):
    total = 0
    for block in blocks:
        macs, height, width = block_macs(block, height, width)
        total += macs
    return total, height, width


def forward_macs(model, size):
    """Forward MACs of one image through a keras-amb model's parts.

    Returns a dict: feature_extractor, attention_branch, perception_branch
    (one pass; the AMB is a second pass of the same size).
    """
    import keras

    from keras_amb.layers.residual_block import ResidualBlock

    fe = 0
    h = w = size
    for layer in model.feature_extractor.layers:
        if isinstance(layer, ResidualBlock):
            macs, h, w = block_macs(layer, h, w)
            fe += macs
        elif isinstance(layer, keras.layers.Conv2D):
            pad = 6 if layer.kernel.shape[0] == 7 else 0
            macs, h, w = conv_macs(layer, h + pad, w + pad)
            fe += macs
        elif layer.__class__.__name__ == "MaxPooling2D":
            h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    branch = model.attention_branch
    att, ah, aw = stage_macs(branch.stage, h, w)
    k = branch.num_classes
    c = branch.stage[-1].output_channels
    att += ah * aw * (c * k + 9 * k + k * k)
    per, ph, pw = stage_macs(model.perception_branch.stage, h, w)
    per += model.perception_branch.feature_dim * k
    return {"feature_extractor": fe, "attention_branch": att, "perception_branch": per}
