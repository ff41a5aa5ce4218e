"""Where the map's mass goes on synthetic v1 (#36): the object, the
distractor square, or the rest of the background.

Version 1 paints one off-object distractor per image: a square with the
head pattern of a random class. The attention map is one map for all
classes; CAM and Grad-CAM are the predicted class's. So a map that looks at
every head-like pattern before the classifier decides spends mass on the
distractor, which "energy inside the object" counts against it. This script
measures that share, on the raw maps and on the maps min-max normalised per
image, and splits it by whether the distractor shows the predicted class's
pattern.

The distractor's mask is not part of the dataset: the script records the
regions the generator paints (`synthetic._paint_pattern`), the images
themselves unchanged (checked against `make_split`).

    python benchmarks/map_distractors.py --runs /tmp/maps-v1/seed{0,1,2}-{abn,area-attn} \\
        --report benchmarks/results/maps_synthetic_v1_distractors
"""

import argparse
import json
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_amb.app.ablation_report import t_interval  # noqa: E402

METHODS = ("attention", "cam", "gradcam")
REGIONS = ("object", "distractor", "ring", "far")
# The ring: background within this many pixels of the object (one cell of
# a 16 x 16 map of a 64-pixel image), where an upsampled coarse map spills.
RING = 4


def images_with_distractor_masks(split, limit):
    """`(images, labels, object masks, distractor masks, distractor classes)`
    of synthetic v1's `split` (the bundled config's data), the first `limit`."""
    from keras_amb.data import synthetic

    config = synthetic.SyntheticConfig()
    painted = []
    original = synthetic._paint_pattern

    def recording(image, region, label, yy, xx):
        painted.append((region.copy(), label))
        return original(image, region, label, yy, xx)

    synthetic._paint_pattern = recording
    try:
        examples, distractors, classes = [], [], []
        for index in range(limit):
            painted.clear()
            examples.append(synthetic.make_example(config, split, index))
            # The head is painted last; the squares before it are distractors.
            squares = [region for region, _ in painted[:-1]]
            distractors.append(np.logical_or.reduce(squares) if squares
                               else np.zeros_like(painted[-1][0]))
            classes.append(painted[0][1] if squares else -1)
    finally:
        synthetic._paint_pattern = original
    reference = synthetic.make_split(config, split, count=limit)
    images = np.stack([e["image"] for e in examples])
    if not np.array_equal(images, reference["image"]):
        raise RuntimeError("recording the painted regions changed the images")
    return (images, np.array([e["label"] for e in examples]),
            np.stack([e["object_mask"] for e in examples]) > 0,
            np.stack(distractors), np.array(classes))


def dilate(masks, radius):
    """Boolean `(N, H, W)` masks grown by `radius` pixels (a square)."""
    grown = masks.copy()
    padded = np.pad(masks, ((0, 0), (radius, radius), (radius, radius)))
    _, height, width = masks.shape
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            grown |= padded[:, dy:dy + height, dx:dx + width]
    return grown


def shares(maps, object_masks, distractor_masks):
    """Per image, the fraction of the map's mass in each region (the
    distractor wins where it touches the ring)."""
    from keras_amb.explain import metrics

    _, height, width = object_masks.shape
    up = np.maximum(metrics.upsample(maps, height, width), 0.0)
    total = np.maximum(up.sum(axis=(1, 2)), 1e-8)
    object_share = (up * object_masks).sum(axis=(1, 2)) / total
    distractor_share = (up * distractor_masks).sum(axis=(1, 2)) / total
    ring = dilate(object_masks, RING) & ~object_masks & ~distractor_masks
    ring_share = (up * ring).sum(axis=(1, 2)) / total
    return {"object": object_share, "distractor": distractor_share, "ring": ring_share,
            "far": 1.0 - object_share - distractor_share - ring_share}


def measure(run_dir, data):
    from keras_amb.app import runs
    from keras_amb.explain import maps as explain_maps

    images, labels, objects, distractors, classes = data
    model = runs.Run.open(run_dir).load_model()
    result = {}
    predicted = []
    maps_of = {m: [] for m in METHODS}
    for start in range(0, len(images), 50):
        outputs, maps = explain_maps.explain(model, images[start:start + 50].astype(np.float32))
        predicted.append(np.argmax(outputs["probabilities"], axis=-1))
        for m in METHODS:
            maps_of[m].append(maps[m])
    predicted = np.concatenate(predicted)
    has = classes >= 0
    same = has & (classes == predicted)
    result["top1"] = float((predicted == labels).mean())
    result["images_with_distractor"] = int(has.sum())
    result["distractor_of_predicted_class"] = int(same.sum())
    result["distractor_area"] = float(distractors[has].mean())
    result["object_area"] = float(objects.mean())
    result["ring_area"] = float((dilate(objects, RING) & ~objects & ~distractors).mean())
    for m in METHODS:
        raw = np.concatenate(maps_of[m])
        for scale, maps in (("raw", raw), ("minmax", explain_maps.normalise(raw))):
            s = shares(maps, objects, distractors)
            for region in REGIONS:
                result[f"{m}/{scale}/{region}"] = float(s[region][has].mean())
            result[f"{m}/{scale}/distractor_other_class"] = float(s["distractor"][has & ~same].mean())
            if same.any():
                result[f"{m}/{scale}/distractor_same_class"] = float(s["distractor"][same].mean())
    return result


def variant_of(run_dir):
    match = re.match(r"seed(\d+)-(.+)$", os.path.basename(os.path.normpath(run_dir)))
    return (match.group(2), int(match.group(1))) if match else (run_dir, 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True,
                        help="Run folders named seed<N>-<variant> (map_objectives.py's).")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--report", help="Write <report>.md and <report>.json.")
    args = parser.parse_args(argv)
    start = time.time()
    data = images_with_distractor_masks(args.split, args.limit)
    per_run = {}
    for run_dir in args.runs:
        per_run[run_dir] = measure(run_dir, data)
        print(f"{run_dir}: {json.dumps(per_run[run_dir])}", flush=True)
    variants = {}
    for run_dir, values in per_run.items():
        name, seed = variant_of(run_dir)
        variants.setdefault(name, {})[seed] = values
    first = next(iter(per_run.values()))
    command = "python benchmarks/map_distractors.py " + " ".join(argv or sys.argv[1:])
    lines = [
        f"# Where the map's mass goes: object, distractor, rest (synthetic v1, "
        f"{args.split}, first {args.limit})", "",
        f"Command: `{command}`  ",
        f"Wall time: {time.time() - start:.0f} s. Mean over the images that have a "
        f"distractor ({first['images_with_distractor']}); the distractor square covers "
        f"{100 * first['distractor_area']:.1f}% of the image, the object "
        f"{100 * first['object_area']:.1f}%, the ring {100 * first['ring_area']:.1f}%. Mean ± 95% t-interval over seeds.", "",
        f"| variant | map | scale | object | distractor | ring ({RING} px around the object) "
        "| far background | distractor, other class than predicted | distractor, predicted "
        "class |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, seeds in variants.items():
        for m in METHODS:
            for scale in ("raw", "minmax"):
                cells = []
                for key in (*REGIONS, "distractor_other_class", "distractor_same_class"):
                    mean, half = t_interval([v.get(f"{m}/{scale}/{key}") for v in seeds.values()])
                    cells.append("-" if mean is None else
                                 f"{mean:.3f}" + (f" ± {half:.3f}" if half else ""))
                lines.append(f"| {name} | {m} | {scale} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.report:
        with open(args.report + ".md", "w", encoding="utf-8") as f:
            f.write(text)
        with open(args.report + ".json", "w", encoding="utf-8") as f:
            json.dump({"command": command, "per_run": per_run}, f, indent=1)


if __name__ == "__main__":
    main()
