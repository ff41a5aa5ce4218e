"""Op by op: where a keras-amb train step goes on TensorFlow's CPU runtime,
beside the PyTorch reference's ops.

keras-amb's step: `model.fit` over one random batch in memory, as
`keras-amb train` runs it (the default backend, no XLA on a CPU). A window of
`--steps` steps runs under `tf.profiler`; the trace (an XSpace protobuf) is
read back and every TensorFlow op kernel's time is summed per step, by op
type and by family (convolution forward and backward, batch norm,
elementwise, reductions, the optimizer's updates, the input, the rest).
Function-call ops (`PartitionedCall` and the like) contain other ops and are
left out of the sums.

The reference (`--peer`, resnet_tiny's shapes only): the plain PyTorch ABN of
`benchmarks/peer_tiny.py`, the same batch, under `torch.profiler`, its ATen
ops' self time summed by the same families.

Two CPU threads run a step. An op's time is its kernel's wall time on the
thread that ran it; TensorFlow may run two ops at once, so the ops' sum can
exceed the step's wall time. "busy" is the time at least one op was running;
wall minus busy is time with no op running (the Python fit loop, the
executor's scheduling, waiting for input).

    python benchmarks/tf_op_profile.py                              # resnet_tiny ABN, 64 px, batch 32
    python benchmarks/tf_op_profile.py --model full                 # AMB+PC+COT
    python benchmarks/tf_op_profile.py --backbone resnet50 --image-size 224 \\
        --batch-size 16 --num-classes 200 --steps 2 --no-reference  # one ResNet-50 step
"""

import argparse
import collections
import glob
import json
import os
import re
import runpy
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PEER = os.path.join(HERE, "..", "..", "shared", "peers", "tiny_abn_torch.py")

# Op type -> family, first match wins.
TF_FAMILIES = (
    ("conv_forward", r"^_?(Fused)?Conv2D$|^DepthwiseConv2dNative$"),
    ("conv_backward", r"^Conv2DBackprop|^DepthwiseConv2dNativeBackprop"),
    ("matmul", r"MatMul|^Einsum$"),
    ("batch_norm", r"BatchNorm"),
    ("optimizer", r"^ResourceApply|^Assign(Add|Sub)?VariableOp$|^ReadVariableOp$"
                  r"|^ResourceScatter|^VarHandleOp$"),
    ("input", r"^Iterator|^OptionalGetValue|^OptionalHasValue"),
    ("reduction", r"^(Sum|Mean|Max|Min|Prod|ArgMax|ArgMin|All|Any)$"),
    ("elementwise", r"."),
)
NESTING_OPS = re.compile(r"PartitionedCall$|^While$|^StatelessWhile$|^If$|^StatelessIf$"
                         r"|^Case$|^RemoteCall$")
# ATen op -> family, for the reference.
TORCH_FAMILIES = (
    ("conv_backward", r"convolution_backward"),
    ("conv_forward", r"conv"),
    ("matmul", r"mm$|addmm|matmul|linear"),
    ("batch_norm", r"batch_norm"),
    ("reduction", r"::(sum|mean|max|min|amax)$|log_softmax|nll_loss"),
    ("elementwise", r"."),
)
FAMILY_ORDER = ("conv_forward", "conv_backward", "matmul", "batch_norm", "elementwise",
                "reduction", "optimizer", "input")


def family_of(op_type, families):
    op_type = re.sub(r"^_Mkl(Native)?", "", op_type)  # oneDNN's kernels of the same op
    for family, pattern in families:
        if re.search(pattern, op_type):
            return family
    return "other"


def _union(intervals):
    """Total length covered by `(start, end)` intervals."""
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def read_trace(logdir):
    """TensorFlow op kernels in the XSpace under `logdir`:
    `(op_type, op_name, start_ps, duration_ps)` tuples."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise SystemExit(f"no *.xplane.pb under {logdir}: the profiler wrote no trace")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as f:
        space.ParseFromString(f.read())
    ops = []
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            base_ps = line.timestamp_ns * 1000
            for event in line.events:
                name = names.get(event.metadata_id, "")
                # Op kernels are traced as "op_name:OpType" (the runtime's own
                # events as "Class::Method").
                match = re.fullmatch(r"([^:]+):([A-Z_][A-Za-z0-9_]*)", name)
                if not match or NESTING_OPS.search(match.group(2)):
                    continue
                ops.append((match.group(2), match.group(1), base_ps + event.offset_ps,
                            event.duration_ps))
    return ops


def profile_keras(args):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_amb
    from keras_amb.data.pipeline import without_autotune

    size, batch, steps, k = args.image_size, args.batch_size, args.steps, args.num_classes
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, k, batch).astype("int32")
    memory = without_autotune(tf.data.Dataset.from_tensors((x, y)).repeat(steps).prefetch(2))
    cls = {"abn": keras_amb.AttentionBranchNetwork,
           "full": keras_amb.AttentionMiningNetwork}[args.model]
    keras.utils.set_random_seed(0)
    model = cls(num_classes=k, backbone=args.backbone, image_size=size)
    model.compile(keras_amb.optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-4))
    model.fit(memory, epochs=1, verbose=0)  # tracing
    unprofiled = []
    for _ in range(args.windows):
        start = time.perf_counter()
        model.fit(memory, epochs=1, verbose=0)
        unprofiled.append((time.perf_counter() - start) / steps)
    logdir = tempfile.mkdtemp(prefix="tf_op_profile_")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    model.fit(memory, epochs=1, verbose=0)
    profiled_wall = (time.perf_counter() - start) / steps
    tf.profiler.experimental.stop()
    ops = read_trace(logdir)
    if not ops:
        raise SystemExit("the trace holds no TensorFlow op kernels")
    first = min(o[2] for o in ops)
    last = max(o[2] + o[3] for o in ops)
    by_type = collections.defaultdict(lambda: [0.0, 0])
    for op_type, _, _, duration in ops:
        by_type[op_type][0] += duration / 1e12 / steps
        by_type[op_type][1] += 1
    return {
        "wall": statistics.median(unprofiled),
        "profiled_wall": profiled_wall,
        "traced_span": (last - first) / 1e12 / steps,
        "busy": _union([(o[2], o[2] + o[3]) for o in ops]) / 1e12 / steps,
        "by_type": {t: (s, n / steps) for t, (s, n) in by_type.items()},
    }


def profile_reference(args):
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile

    sys.argv = [args.peer, str(args.batch_size), str(args.image_size), str(args.num_classes)]
    peer = runpy.run_path(args.peer, run_name="peer")  # builds, warms up and times itself
    step = peer["step"]
    unprofiled = []
    for _ in range(args.windows):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        unprofiled.append((time.perf_counter() - start) / args.steps)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    profiled_wall = (time.perf_counter() - start) / args.steps
    by_type = {}
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        by_type[event.key] = (event.self_cpu_time_total / 1e6 / args.steps,
                              event.count / args.steps)
    del torch
    busy = sum(s for s, _ in by_type.values())
    return {"wall": statistics.median(unprofiled), "profiled_wall": profiled_wall,
            "busy": busy, "by_type": by_type}


def summarize(result, families_of):
    families = collections.defaultdict(lambda: [0.0, 0.0])
    for op_type, (seconds, count) in result["by_type"].items():
        family = family_of(op_type, families_of)
        families[family][0] += seconds
        families[family][1] += count
    return families


def report(title, results, families_of, top):
    """Prints one side's rounds; returns its families' median ms per step."""
    per_round = [summarize(r, families_of) for r in results]
    names = [f for f in FAMILY_ORDER + ("other",) if any(f in fam for fam in per_round)]
    walls = ", ".join(f"{1000 * r['wall']:.1f}" for r in results)
    print(f"{title}: wall per step unprofiled {walls} ms; profiled "
          + ", ".join(f"{1000 * r['profiled_wall']:.1f}" for r in results) + " ms")
    print("| family | ms per step, per round | share of ops | ops per step |")
    print("|---|---|---|---|")
    medians = {}
    for family in names:
        values = [fam.get(family, [0.0, 0.0]) for fam in per_round]
        medians[family] = statistics.median(v[0] for v in values)
        shares = statistics.median(
            v[0] / sum(x[0] for x in fam.values()) for v, fam in zip(values, per_round))
        print(f"| {family} | {', '.join(f'{1000 * v[0]:.1f}' for v in values)} | "
              f"{shares:.0%} | {values[0][1]:.0f} |")
    ops = [sum(v[0] for v in fam.values()) for fam in per_round]
    print(f"| all ops (summed over threads) | {', '.join(f'{1000 * o:.1f}' for o in ops)} | - | - |")
    busy = [r["busy"] for r in results]
    print(f"| some op running (busy) | {', '.join(f'{1000 * b:.1f}' for b in busy)} | - | - |")
    idle = [r["profiled_wall"] - r["busy"] for r in results]
    print(f"| no op running | {', '.join(f'{1000 * i:.1f}' for i in idle)} | - | - |")
    largest = sorted(results[0]["by_type"].items(), key=lambda kv: -kv[1][0])[:top]
    print("largest op types (round 1), ms per step (count per step): "
          + "; ".join(f"{t} {1000 * s:.1f} (x{n:.0f})" for t, (s, n) in largest))
    medians["wall"] = statistics.median(r["wall"] for r in results)
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", choices=("keras", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=("abn", "full"), default="abn",
                        help="ABN, or the full model (AMB+PC+COT)")
    parser.add_argument("--backbone", default="resnet_tiny")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=24)
    parser.add_argument("--steps", type=int, default=10, help="steps per window")
    parser.add_argument("--windows", type=int, default=3, help="unprofiled windows")
    parser.add_argument("--rounds", type=int, default=2,
                        help="fresh processes per side, alternating")
    parser.add_argument("--top", type=int, default=10, help="op types listed")
    parser.add_argument("--peer", default=DEFAULT_PEER, help="the PyTorch reference")
    parser.add_argument("--no-reference", action="store_true",
                        help="profile keras-amb only (the reference has resnet_tiny's "
                             "shapes only)")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if args.run == "keras":
        print(json.dumps(profile_keras(args)))
        return
    if args.run == "reference":
        print(json.dumps(profile_reference(args)))
        return
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        raise SystemExit("tf_op_profile.py profiles the TensorFlow backend: "
                         "unset KERAS_BACKEND or set it to tensorflow")
    reference = not args.no_reference and args.backbone == "resnet_tiny"
    if reference and not os.path.exists(args.peer):
        raise SystemExit(f"--peer {args.peer}: no such file (or pass --no-reference)")
    sys.path.insert(0, HERE)
    from _common import run_isolated

    forwarded = []
    for name in ("model", "backbone", "image_size", "batch_size", "num_classes", "steps",
                 "windows", "peer"):
        forwarded += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    print(f"{args.model} ({args.backbone}), {args.image_size} px, batch {args.batch_size}, "
          f"K={args.num_classes}, SGD momentum; {args.steps} steps profiled, {args.windows} "
          f"unprofiled windows of {args.steps}, median; each side in a fresh process, "
          f"alternating, {args.rounds} rounds; {os.cpu_count()} CPUs", flush=True)
    sides = ["keras"] + (["reference"] if reference else [])
    results = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side in sides:
            env = {"KERAS_BACKEND": "tensorflow"} if side == "keras" else {}
            results[side].append(run_isolated(__file__, ["--run", side] + forwarded, env=env,
                                              timeout=args.timeout))
    ours = report("keras-amb, TensorFlow", results["keras"], TF_FAMILIES, args.top)
    if reference:
        theirs = report("PyTorch reference", results["reference"], TORCH_FAMILIES, args.top)
        print("keras-amb minus the reference, medians, ms per step: " + "; ".join(
            f"{family} {1000 * (ours.get(family, 0) - theirs.get(family, 0)):+.1f}"
            for family in FAMILY_ORDER + ("other", "wall")
            if family in ours or family in theirs))


if __name__ == "__main__":
    main()
