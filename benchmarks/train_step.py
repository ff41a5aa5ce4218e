"""Train-step speed and memory: ResNet-50 vs ABN vs AMB vs AMB+PC+COT.

Each variant runs in its own process (so peak memory is its own) on the
current Keras backend, on random data. Prints images/s, peak memory, and the
ratios the targets are stated in:
  ABN / ResNet-50 step time vs the FLOPs ratio (target: within +10%);
  AMB+PC+COT / ABN step time (target: <= 2.2x; FLOPs ratio about 2.1x).

    KERAS_BACKEND=tensorflow python benchmarks/train_step.py               # 224 px ResNet-50
    KERAS_BACKEND=tensorflow python benchmarks/train_step.py --small       # 64 px resnet_small
    python benchmarks/train_step.py --mixed-precision --jit-compile on     # on a GPU
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

VARIANTS = ("resnet50", "abn", "amb", "amb_pc_cot")


def measure(args):
    import keras
    import numpy as np

    from _common import forward_macs
    from _common import peak_device_mib
    from _common import peak_rss_mib

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    import keras_amb

    size, batch, k = args.image_size, args.batch_size, args.num_classes
    jit = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    if args.variant == "resnet50":
        inputs = keras.Input((size, size, 3))
        base = keras.applications.ResNet50(
            include_top=False, weights=None, input_tensor=inputs, pooling="avg"
        ) if args.backbone == "resnet50" else None
        if base is None:  # a plain classifier of the small backbone
            from keras_amb.models.backbones import feature_extractor

            fe = feature_extractor(args.backbone)
            x = keras.layers.GlobalAveragePooling2D()(fe(inputs))
        else:
            x = base.output
        model = keras.Model(inputs, keras.layers.Dense(k)(x))
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=(jit if jit != "auto" else keras_amb.models.train_steps.default_jit_compile()),
        )
        macs = None
    else:
        cls = keras_amb.AttentionBranchNetwork if args.variant == "abn" else keras_amb.AttentionMiningNetwork
        kwargs = {}
        if args.variant == "amb":
            kwargs = dict(prototype_conformity=False, complement_objective=False)
        model = cls(num_classes=k, backbone=args.backbone, image_size=size, **kwargs)
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=jit)
        macs = forward_macs(model, size)
    rng = np.random.default_rng(0)
    n = batch * (args.steps + args.warmup)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = rng.integers(0, k, n).astype("int32")
    warm = batch * args.warmup
    model.fit(x[:warm], y[:warm], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(x[warm:], y[warm:], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "variant": args.variant,
        "images_per_s": args.steps * batch / seconds,
        "step_s": seconds / args.steps,
        "peak_rss_mib": peak_rss_mib(),
        "peak_device_mib": peak_device_mib(),
        "macs": macs,
    }))


def resnet50_macs(size, k):
    """Forward MACs of the plain ResNet-50 classifier (stem..stage 4 + dense)."""
    import keras_amb

    model = keras_amb.AttentionBranchNetwork(num_classes=k, backbone="resnet50", image_size=size)
    from _common import forward_macs

    parts = forward_macs(model, size)
    return parts["feature_extractor"] + parts["perception_branch"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--small", action="store_true", help="resnet_small at 64 px")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto")
    args = parser.parse_args()
    args.backbone = args.backbone or ("resnet_small" if args.small else "resnet50")
    args.image_size = args.image_size or (64 if args.small else 224)
    if args.variant:
        return measure(args)

    from _common import run_isolated

    import keras

    common = [
        "--backbone", args.backbone, "--image-size", str(args.image_size),
        "--batch-size", str(args.batch_size), "--num-classes", str(args.num_classes),
        "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--jit-compile", args.jit_compile,
    ] + (["--mixed-precision"] if args.mixed_precision else [])
    results = {}
    for variant in VARIANTS:
        results[variant] = run_isolated(__file__, ["--variant", variant] + common)
        r = results[variant]
        print(f"  measured {variant}: {r['images_per_s']:.2f} img/s", flush=True)
    print(f"\nbackend {keras.backend.backend()}, {args.backbone} {args.image_size}px, "
          f"batch {args.batch_size}, K={args.num_classes}, mixed precision "
          f"{'on' if args.mixed_precision else 'off'}, jit_compile {args.jit_compile}")
    print("| variant | images/s | step s | peak RSS MiB | peak device MiB |")
    print("|---|---|---|---|---|")
    for variant, r in results.items():
        device = f"{r['peak_device_mib']:.0f}" if r["peak_device_mib"] else "-"
        print(f"| {variant} | {r['images_per_s']:.2f} | {r['step_s']:.3f} | {r['peak_rss_mib']:.0f} | {device} |")
    abn = results["abn"]["macs"]
    abn_macs = abn["feature_extractor"] + abn["attention_branch"] + abn["perception_branch"]
    base_macs = abn["feature_extractor"] + abn["perception_branch"]
    # AMB+PC+COT: step A = ABN-sized pass (no AMB with COT on); step B =
    # extractor + attention branch + the AMB pass of the perception branch.
    full_macs = abn_macs + abn_macs
    t = {v: results[v]["step_s"] for v in results}
    print(f"\nABN / ResNet-50 step time: {t['abn'] / t['resnet50']:.2f}x "
          f"(FLOPs ratio {abn_macs / base_macs:.2f}x; target <= {1.1 * abn_macs / base_macs:.2f}x)")
    print(f"AMB / ABN step time: {t['amb'] / t['abn']:.2f}x "
          f"(FLOPs ratio {(abn_macs + abn['perception_branch']) / abn_macs:.2f}x)")
    print(f"AMB+PC+COT / ABN step time: {t['amb_pc_cot'] / t['abn']:.2f}x "
          f"(FLOPs ratio {full_macs / abn_macs:.2f}x; target <= 2.2x)")


if __name__ == "__main__":
    main()
