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

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

VARIANTS = ("resnet50", "abn", "amb", "amb_pc_cot")


def measure(args):
    import keras
    import numpy as np

    from _common import forward_macs
    from _common import peak_device_mib
    from _common import peak_rss_mib

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(args.mixed_precision)
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
    # Each window is one `fit` epoch of `steps` batches; an epoch ends by
    # reading its metrics back, so asynchronous dispatch (JAX, CUDA) is
    # inside the window. The median window is reported: a slow window from a
    # clock change or a stray recompilation does not move it.
    windows = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.fit(x[warm:], y[warm:], batch_size=batch, epochs=1, verbose=0, shuffle=False)
        windows.append(time.perf_counter() - start)
    seconds = float(np.median(windows))
    print(json.dumps({
        "variant": args.variant,
        "images_per_s": args.steps * batch / seconds,
        "step_s": seconds / args.steps,
        "window_spread": (max(windows) - min(windows)) / seconds,
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
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed windows of --steps steps; the median is reported")
    parser.add_argument("--mixed-precision", nargs="?", const="mixed_float16", default=None,
                        choices=("mixed_float16", "mixed_bfloat16"),
                        help="dtype policy (bare flag: mixed_float16, with loss scaling)")
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds each variant's process may take")
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
        "--repeats", str(args.repeats),
        "--jit-compile", args.jit_compile,
    ] + (["--mixed-precision", args.mixed_precision] if args.mixed_precision else [])
    results = {}
    for variant in args.variants:
        try:
            results[variant] = run_isolated(
                __file__, ["--variant", variant] + common, timeout=args.timeout
            )
        except RuntimeError as error:  # one failed variant does not lose the others
            print(f"  {variant} failed: {str(error).splitlines()[0]}", flush=True)
            continue
        r = results[variant]
        print(f"  measured {variant}: {r['images_per_s']:.2f} img/s", flush=True)
    print(f"\nbackend {keras.backend.backend()}, {args.backbone} {args.image_size}px, "
          f"batch {args.batch_size}, K={args.num_classes}, precision "
          f"{args.mixed_precision or 'float32'}, jit_compile {args.jit_compile}")
    print(f"{args.repeats} timed window(s) of {args.steps} steps each, median reported")
    print("| variant | images/s | step s | window spread | peak RSS MiB | peak device MiB |")
    print("|---|---|---|---|---|---|")
    for variant in args.variants:
        r = results.get(variant)
        if r is None:
            print(f"| {variant} | failed | | | | |")
            continue
        device = f"{r['peak_device_mib']:.0f}" if r["peak_device_mib"] else "-"
        print(f"| {variant} | {r['images_per_s']:.2f} | {r['step_s']:.3f} | "
              f"{100 * r['window_spread']:.0f}% | {r['peak_rss_mib']:.0f} | {device} |")
    macs = next((r["macs"] for r in results.values() if r["macs"]), None)
    if macs is None:
        return
    abn_macs = macs["feature_extractor"] + macs["attention_branch"] + macs["perception_branch"]
    base_macs = macs["feature_extractor"] + macs["perception_branch"]
    # AMB+PC+COT: step A = ABN-sized pass (no AMB with COT on); step B =
    # extractor + attention branch + the AMB pass of the perception branch.
    full_macs = abn_macs + abn_macs
    t = {v: r["step_s"] for v, r in results.items()}
    print()
    if "abn" in t and "resnet50" in t:
        print(f"ABN / ResNet-50 step time: {t['abn'] / t['resnet50']:.2f}x "
              f"(FLOPs ratio {abn_macs / base_macs:.2f}x; target <= {1.1 * abn_macs / base_macs:.2f}x)")
    if "abn" in t and "amb" in t:
        print(f"AMB / ABN step time: {t['amb'] / t['abn']:.2f}x "
              f"(FLOPs ratio {(abn_macs + macs['perception_branch']) / abn_macs:.2f}x)")
    if "abn" in t and "amb_pc_cot" in t:
        print(f"AMB+PC+COT / ABN step time: {t['amb_pc_cot'] / t['abn']:.2f}x "
              f"(FLOPs ratio {full_macs / abn_macs:.2f}x; target <= 2.2x)")


if __name__ == "__main__":
    main()
