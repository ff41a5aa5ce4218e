"""Train-step speed side by side: the official ABN (PyTorch) and keras-amb.

Every measurement runs in a fresh process; the configurations alternate, in
rounds, so a slow spell of the machine hits all of them alike. Each process
times `--windows` windows of `--steps` training steps after `--warmup` steps
and reports the median window. Setup as in the official ABN code: ResNet-50,
batch 16, 224 px, K=200, SGD (momentum 0.9, weight decay 1e-4), loss
CE(attention branch) + CE(perception branch), random data.

Configurations:
  official-nchw, official-channels-last   the official ABN code (its file,
      loaded from --peer, default ../shared/peers/attention_branch_network/)
  official-bf16                           the same under torch.autocast(bfloat16)
  keras-<backend>                         keras-amb's ABN on each backend, fed
      by a tf.data pipeline like `keras-amb train`'s; the same process then
      times AMB+PC+COT (its step / the ABN step is reported)
  keras-<backend>-bf16                    the same under mixed_bfloat16

    python benchmarks/peer_abn.py                       # 2 rounds, all configurations
    python benchmarks/peer_abn.py --rounds 3 --configs official-channels-last keras-tensorflow
    python benchmarks/peer_abn.py --rounds 1 --configs official-channels-last keras-torch --profile
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PEER = os.path.join(HERE, "..", "..", "shared", "peers", "attention_branch_network",
                            "resnet.py")
CONFIGS = (
    "official-nchw", "official-channels-last", "official-bf16",
    "keras-tensorflow", "keras-jax", "keras-torch",
    "keras-tensorflow-bf16", "keras-jax-bf16", "keras-torch-bf16",
)
DEFAULT_CONFIGS = (
    "official-nchw", "official-channels-last", "keras-tensorflow", "keras-jax", "keras-torch",
)


def _windows(step, args):
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.windows):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / args.steps, times


def measure_official(args, memory_format, bf16):
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("official_abn_resnet", args.peer)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.resnet50(pretrained=False, num_classes=args.num_classes)
    size, batch = args.image_size, args.batch_size
    x = torch.rand(batch, 3, size, size) * 255
    y = torch.randint(0, args.num_classes, (batch,))
    if memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            attention_logits, logits, _ = model(x)
            loss = criterion(attention_logits.float(), y) + criterion(logits.float(), y)
        loss.backward()
        optimizer.step()

    seconds, windows = _windows(step, args)
    result = {"abn_step_s": seconds, "abn_windows": windows, "threads": torch.get_num_threads()}
    if args.profile:
        result["profile"] = _torch_profile(lambda: [step() for _ in range(args.steps)], args.steps)
    return result


def _torch_profile(run, steps):
    """Where a PyTorch step's time goes: seconds per step inside convolution,
    batch-norm and other ATen ops (self time on the calling thread, as
    torch.profiler records it), and the step's wall time under the profiler.
    Wall minus the ops is Python, dispatch and data feeding."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    wall = time.perf_counter() - start
    families = {"convolution": 0.0, "batch_norm": 0.0, "other_ops": 0.0}
    others = []
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6 / steps
        if "conv" in event.key:
            family = "convolution"
        elif "batch_norm" in event.key:
            family = "batch_norm"
        else:
            family = "other_ops"
            others.append((seconds, event.key, event.count // steps))
        families[family] += seconds
    families["wall"] = wall / steps
    families["outside_ops"] = families["wall"] - sum(
        families[k] for k in ("convolution", "batch_norm", "other_ops"))
    families["top_other_ops"] = [
        f"{name} {sec:.3f}s x{count}" for sec, name, count in sorted(others, reverse=True)[:6]]
    return families


def measure_keras(args, bf16):
    import keras
    import numpy as np
    import tensorflow as tf

    if bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    import keras_amb
    from keras_amb.data.pipeline import without_autotune

    size, batch, k = args.image_size, args.batch_size, args.num_classes
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, k, batch).astype("int32")
    # What `keras-amb train` feeds: a tf.data pipeline (autotune off).
    dataset = without_autotune(
        tf.data.Dataset.from_tensors((x, y)).repeat(args.steps).prefetch(2))
    warm = without_autotune(tf.data.Dataset.from_tensors((x, y)).repeat(args.warmup))
    result = {"backend": keras.backend.backend()}
    for name, cls, kwargs in (
        ("abn", keras_amb.AttentionBranchNetwork, {}),
        ("full", keras_amb.AttentionMiningNetwork, {}),
    ):
        if name == "full" and not args.full:
            continue
        keras.utils.set_random_seed(0)
        model = cls(num_classes=k, backbone="resnet50", image_size=size, **kwargs)
        model.compile(keras_amb.optimizers.SGD(0.01, momentum=0.9, weight_decay=1e-4))
        model.fit(warm, epochs=1, verbose=0)
        times = []
        for _ in range(args.windows):
            start = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0)
            times.append(time.perf_counter() - start)
        result[f"{name}_step_s"] = statistics.median(times) / args.steps
        result[f"{name}_windows"] = times
        if args.profile and name == "abn" and result["backend"] == "torch":
            result["profile"] = _torch_profile(
                lambda: model.fit(dataset, epochs=1, verbose=0), args.steps)
    return result


def run_config(config, args):
    """One configuration in a fresh process; its JSON result."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if config.startswith("keras-"):
        env["KERAS_BACKEND"] = config.split("-")[1]
    command = [sys.executable, __file__, "--run", config] + _common(args)
    start = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=args.timeout)
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["process_s"] = round(time.time() - start, 1)
            return result
    return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}


def _common(args):
    return ["--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
            "--num-classes", str(args.num_classes), "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--windows", str(args.windows),
            "--peer", args.peer] + (["--full"] if args.full else []) + (
                ["--profile"] if args.profile else [])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(DEFAULT_CONFIGS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed window")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--full", action="store_true",
                        help="also time AMB+PC+COT in each keras-amb process")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one window of the PyTorch ABN steps (official and "
                             "keras-torch) by op family")
    parser.add_argument("--peer", default=DEFAULT_PEER,
                        help="the official code's resnet.py (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    if args.run:
        config = args.run
        bf16 = config.endswith("-bf16")
        if config.startswith("official"):
            layout = "channels_last" if config == "official-channels-last" else "nchw"
            result = measure_official(args, layout, bf16)
        else:
            result = measure_keras(args, bf16)
        print(json.dumps(result))
        return
    if any(c.startswith("official") for c in args.configs) and not os.path.isfile(args.peer):
        sys.exit(f"{args.peer}: the official ABN code is not there; pass --peer PATH/resnet.py")
    batch = args.batch_size
    print(f"ResNet-50 ABN train step, batch {batch}, {args.image_size} px, K={args.num_classes}; "
          f"{args.windows} windows of {args.steps} steps after {args.warmup}, median; "
          f"{os.cpu_count()} CPUs; each configuration in a fresh process, {args.rounds} rounds",
          flush=True)
    rounds = []
    for r in range(args.rounds):
        results = {}
        for config in args.configs:
            results[config] = run_config(config, args)
            res = results[config]
            shown = (f"{batch / res['abn_step_s']:.2f} img/s" if "abn_step_s" in res
                     else f"failed: {res['error']}")
            if "full_step_s" in res:
                shown += (f", AMB+PC+COT {batch / res['full_step_s']:.2f} img/s "
                          f"({res['full_step_s'] / res['abn_step_s']:.2f}x its ABN step)")
            print(f"  round {r + 1} {config}: {shown}", flush=True)
            if "profile" in res:
                profile = dict(res["profile"])
                top = profile.pop("top_other_ops")
                print("    profiled, s per step: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in profile.items()), flush=True)
                print("    largest other ops per step: " + "; ".join(top), flush=True)
        rounds.append(results)
    _report(rounds, args)


def _report(rounds, args):
    batch = args.batch_size
    configs = args.configs
    print("\n| configuration | " + " | ".join(f"round {i + 1} img/s" for i in range(len(rounds)))
          + " |")
    print("|---|" + "---|" * len(rounds))
    for config in configs:
        cells = []
        for results in rounds:
            res = results[config]
            cells.append(f"{batch / res['abn_step_s']:.2f}" if "abn_step_s" in res else "failed")
        print(f"| {config} | " + " | ".join(cells) + " |")
    officials = [c for c in configs if c.startswith("official") and not c.endswith("bf16")]
    print()
    for r, results in enumerate(rounds, start=1):
        best = max((batch / results[c]["abn_step_s"] for c in officials
                    if "abn_step_s" in results[c]), default=None)
        if best is None:
            continue
        line = [f"round {r}: official best {best:.2f} img/s"]
        for config in configs:
            res = results[config]
            if config.startswith("keras") and "abn_step_s" in res:
                line.append(f"{config} {batch / res['abn_step_s'] / best:.2f}x")
            if "full_step_s" in res:
                line.append(f"{config} AMB+PC+COT/ABN {res['full_step_s'] / res['abn_step_s']:.2f}x")
        print("; ".join(line))


if __name__ == "__main__":
    main()
