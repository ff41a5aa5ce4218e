"""Small-model train speed side by side: a plain PyTorch ABN and keras-amb.

The small backbones are what a CPU user trains (quickstart, synthetic_v2,
ablations, the tests). The reference is `../shared/peers/tiny_abn_torch.py`:
an eager, channels_last PyTorch ABN with `resnet_tiny`'s shapes, SGD with
momentum. Each configuration runs in a fresh process; configurations
alternate within each round so a slow spell of the machine hits all alike.

Configurations:
  reference            the PyTorch file (--peer), run as a script
  keras-<backend>      keras-amb's ABN (resnet_tiny), random data fed by a
                       tf.data pipeline from memory; the same process then
                       times AMB+PC+COT, and one real epoch slice through the
                       training pipeline of the synthetic dataset (decode,
                       random-resized crop, flip, batch)
  keras-tensorflow-xla the same with jit_compile=True
  keras-tensorflow-onednn / -eigen
                       TensorFlow with its oneDNN kernels forced on / off
                       (TF_ENABLE_ONEDNN_OPTS=1 / 0; TensorFlow's own default
                       is on only for CPUs with AVX512_VNNI, AVX512_BF16 or
                       AMX, and keras-amb's is on everywhere)

    python benchmarks/peer_tiny.py                          # 2 rounds, 32/64 px, batch 32/64
    python benchmarks/peer_tiny.py --rounds 3 --shapes 64x32 --configs reference keras-torch
    python benchmarks/peer_tiny.py --rounds 1 --shapes 64x32 --configs keras-torch --profile
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PEER = os.path.join(HERE, "..", "..", "shared", "peers", "tiny_abn_torch.py")
CONFIGS = ("reference", "keras-tensorflow", "keras-tensorflow-xla", "keras-tensorflow-onednn",
           "keras-tensorflow-eigen", "keras-jax", "keras-torch")
# The environment each TensorFlow variant adds (read before TensorFlow loads).
CONFIG_ENV = {"keras-tensorflow-onednn": {"TF_ENABLE_ONEDNN_OPTS": "1"},
              "keras-tensorflow-eigen": {"TF_ENABLE_ONEDNN_OPTS": "0"}}
NUM_CLASSES = 24


def _windows(run, windows):
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def measure_keras(args, jit_compile):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_amb
    from keras_amb.data import load_source
    from keras_amb.data import prepare
    from keras_amb.data.pipeline import without_autotune

    size, batch, steps = args.image_size, args.batch_size, args.steps
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, batch).astype("int32")
    memory = without_autotune(tf.data.Dataset.from_tensors((x, y)).repeat(steps).prefetch(2))
    warm = without_autotune(tf.data.Dataset.from_tensors((x, y)).repeat(5))
    result = {"backend": keras.backend.backend()}
    # "full": the paper's objective (the class's defaults); "default": the
    # objective `keras-amb train` trains (area term, mining on the map only).
    default = {"area_weight": 1.0, "amb_gradient": "attention"}
    for name, cls, extra in (("abn", keras_amb.AttentionBranchNetwork, {}),
                             ("full", keras_amb.AttentionMiningNetwork, {}),
                             ("default", keras_amb.AttentionMiningNetwork, default)):
        keras.utils.set_random_seed(0)
        model = cls(num_classes=NUM_CLASSES, backbone=args.backbone, image_size=size, **extra)
        model.compile(keras_amb.optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-4),
                      jit_compile=jit_compile)
        model.fit(warm, epochs=1, verbose=0)
        seconds, times = _windows(lambda: model.fit(memory, epochs=1, verbose=0), args.windows)
        result[f"{name}_img_s"] = batch * steps / seconds
        result[f"{name}_windows"] = times
        if name == "abn":
            if args.profile and result["backend"] == "torch":
                from peer_abn import _torch_profile

                result["profile"] = _torch_profile(
                    lambda: model.fit(memory, epochs=1, verbose=0), steps)
            # The real input: the synthetic dataset's training pipeline.
            source = load_source("synthetic", progress=False)
            train = prepare(source.examples("train"), size, batch, training=True,
                            drop_remainder=True).take(steps)
            model.fit(train.take(2), epochs=1, verbose=0)
            seconds, _ = _windows(lambda: model.fit(train, epochs=1, verbose=0), 2)
            result["abn_pipeline_img_s"] = batch * steps / seconds
            start, seen = time.perf_counter(), 0
            for images, _ in train:
                seen += int(images.shape[0])
            result["pipeline_only_img_s"] = seen / (time.perf_counter() - start)
    return result


def measure_reference(args):
    command = [sys.executable, args.peer, str(args.batch_size), str(args.image_size),
               str(NUM_CLASSES)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    match = re.search(r"img/s ([0-9.]+)", done.stdout)
    if not match:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return {"abn_img_s": float(match.group(1))}


def run_config(config, args):
    """One configuration in a fresh process; its JSON result."""
    if config == "reference":
        return measure_reference(args)
    from _common import run_isolated

    command = ["--run", config,
               "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
               "--steps", str(args.steps), "--windows", str(args.windows),
               "--backbone", args.backbone]
    command += ["--profile"] if args.profile else []
    try:
        env = dict(CONFIG_ENV.get(config, {}), KERAS_BACKEND=config.split("-")[1])
        return run_isolated(__file__, command, env=env, timeout=args.timeout)
    except RuntimeError as error:
        return {"error": str(error).strip().splitlines()[-1]}


def _shape(text):
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SIZExBATCH, e.g. 64x32")
    return int(match.group(1)), int(match.group(2))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", choices=CONFIGS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--shapes", nargs="+", type=_shape, default=[(32, 32), (32, 64), (64, 32), (64, 64)],
                        metavar="SIZExBATCH", help="image size x batch (default: 32x32 32x64 64x32 64x64)")
    parser.add_argument("--backbone", default="resnet_tiny",
                        help="keras-amb's backbone (the reference has resnet_tiny's shapes only)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="keras-torch: also profile one window of ABN steps by op family")
    parser.add_argument("--peer", default=DEFAULT_PEER,
                        help="the PyTorch reference (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(measure_keras(args, True if args.run.endswith("-xla") else "auto")))
        return
    if args.backbone != "resnet_tiny" and "reference" in args.configs:
        sys.exit(f"--backbone {args.backbone}: the reference has resnet_tiny's shapes; "
                 "leave 'reference' out of --configs")
    if "reference" in args.configs and not os.path.isfile(args.peer):
        sys.exit(f"{args.peer}: the PyTorch reference is not there; pass --peer PATH")
    print(f"{args.backbone} ABN train speed, K={NUM_CLASSES}, SGD momentum, random data in memory; "
          f"{args.windows} windows of {args.steps} steps, median; {os.cpu_count()} CPUs; "
          f"each configuration in a fresh process, alternating, {args.rounds} rounds", flush=True)
    table = {}
    for size, batch in args.shapes:
        args.image_size, args.batch_size = size, batch
        for r in range(args.rounds):
            for config in args.configs:
                res = run_config(config, args)
                table.setdefault((size, batch, config), []).append(res)
                print(f"  {size} px batch {batch} round {r + 1} {config}: {_line(res)}", flush=True)
    _report(table, args)


def _line(res):
    if "error" in res:
        return f"failed: {res['error']}"
    text = f"ABN {res['abn_img_s']:.1f} img/s"
    if "full_img_s" in res:
        text += (f", AMB+PC+COT {res['full_img_s']:.1f} img/s "
                 f"({res['abn_img_s'] / res['full_img_s']:.2f}x its ABN step), "
                 f"the default objective {res['default_img_s']:.1f} img/s "
                 f"({res['abn_img_s'] / res['default_img_s']:.2f}x), "
                 f"ABN on the synthetic pipeline {res['abn_pipeline_img_s']:.1f} img/s "
                 f"(pipeline alone {res['pipeline_only_img_s']:.0f} img/s)")
    if "profile" in res:
        profile = dict(res["profile"])
        top = profile.pop("top_other_ops")
        text += ("\n    profiled, s per step: "
                 + ", ".join(f"{k} {v:.3f}" for k, v in profile.items())
                 + "\n    largest other ops per step: " + "; ".join(top))
    return text


def _report(table, args):
    print("\n| px | batch | configuration | ABN img/s per round | x reference per round "
          "| AMB+PC+COT step / ABN step | default objective's step / ABN step "
          "| ABN on the synthetic pipeline img/s |")
    print("|---|---|---|---|---|---|---|---|")
    for size, batch in args.shapes:
        reference = [r.get("abn_img_s") for r in table.get((size, batch, "reference"), [])]
        for config in args.configs:
            results = table[(size, batch, config)]
            rates = [r.get("abn_img_s") for r in results]
            ratios = [f"{a / b:.2f}" if a and b else "-" for a, b in zip(rates, reference)]
            full = [f"{r['abn_img_s'] / r['full_img_s']:.2f}" for r in results if "full_img_s" in r]
            default = [f"{r['abn_img_s'] / r['default_img_s']:.2f}" for r in results
                       if "default_img_s" in r]
            piped = [f"{r['abn_pipeline_img_s']:.1f}" for r in results if "abn_pipeline_img_s" in r]
            print(f"| {size} | {batch} | {config} | "
                  + ", ".join(f"{v:.1f}" if v else "failed" for v in rates)
                  + f" | {', '.join(ratios) if config != 'reference' else '1'} | "
                  + f"{', '.join(full) or '-'} | {', '.join(default) or '-'} | "
                  + f"{', '.join(piped) or '-'} |")


if __name__ == "__main__":
    main()
