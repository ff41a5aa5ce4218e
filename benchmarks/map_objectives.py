"""Maps that explain (#36): the map objectives, over seeds, against the
same network's CAM and Grad-CAM.

Per seed: pre-train one ABN (the config's `pretrain_epochs`); from it, for
the config's `epochs`, train each variant; evaluate each on `--split` with
the attention map, CAM and Grad-CAM of that network
(`keras_amb.explain.evaluation.evaluate_methods`). Runs and evaluations are
reused when the output folder has them, so an interrupted run continues and
a new variant or seed adds to the same table.

The report gives each variant's mean over seeds and, for the section 4
lines of the issue, per-seed paired differences with a t-interval over
seeds (the interval that counts; METHOD.md "Intervals"):
- attention map minus the same network's Grad-CAM (pointing game, energy
  inside the object and the part), minus its CAM (RISE Score);
- top-1 minus top-1 with a shuffled map (the classifier uses its map);
- top-1 minus ABN's top-1 of the same seed.

Choose on `--split val`; report the chosen variants on `test`.

Example (about 4 min per variant and seed on a 2-core CPU, v1):

    python benchmarks/map_objectives.py --config synthetic --seeds 0 1 2 \\
        --variants abn no-mining paper area --split test \\
        --output /tmp/maps-v1 --report benchmarks/results/maps_synthetic_v1
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_amb.app.ablation_report import t_interval  # noqa: E402
from keras_amb.arguments import PAPER_OBJECTIVE  # noqa: E402

# Every variant names its objective in full, whatever the config's defaults.
PROPOSED = dict(PAPER_OBJECTIVE, architecture="mining", amb=True, pc=True, cot=True)
NO_MINING = dict(PROPOSED, amb=False, cot=False)
# The mining terms move the map alone (the default's route).
MAP_ONLY = dict(PROPOSED, amb_gradient="attention")
# name -> (label, config overrides); each from the seed's pre-trained ABN.
VARIANTS = {
    "abn": ("ABN (bypass), continued", {"architecture": "abn"}),
    "no-mining": ("No bypass, no mining (AMB, COT off)", NO_MINING),
    "paper": ("AMB + PC + COT (the paper's objective)", dict(PROPOSED)),
    "area": ("AMB + PC + COT + area", dict(PROPOSED, area_weight=1.0)),
    "area-0.1": ("AMB + PC + COT + area 0.1 (extremal)",
                 dict(PROPOSED, area_weight=1.0, area_target=0.1)),
    "area-0.2": ("AMB + PC + COT + area 0.2 (extremal)",
                 dict(PROPOSED, area_weight=1.0, area_target=0.2)),
    "area-tv": ("AMB + PC + COT + area + smoothness",
                dict(PROPOSED, area_weight=1.0, smoothness_weight=1.0)),
    "area-norm": ("AMB + PC + COT + area, normalised mask",
                  dict(PROPOSED, area_weight=1.0, map_normalization="mask")),
    "area-norm-all": ("AMB + PC + COT + area, normalised map",
                      dict(PROPOSED, area_weight=1.0, map_normalization="all")),
    "area-erasing": ("AMB + PC + COT (map only) + area + erasing",
                     dict(MAP_ONLY, area_weight=1.0, erasing_weight=1.0)),
    "no-mining-area": ("No mining + area", dict(NO_MINING, area_weight=1.0)),
    "area-attn": ("AMB + PC + COT (map only) + area, the default",
                  dict(MAP_ONLY, area_weight=1.0)),
    "area-0.3w-attn": ("AMB + PC + COT (map only) + area x0.3",
                       dict(MAP_ONLY, area_weight=0.3)),
    "area-3w-attn": ("AMB + PC + COT (map only) + area x3",
                     dict(MAP_ONLY, area_weight=3.0)),
    "area-0.05-attn": ("AMB + PC + COT (map only) + area 0.05 (extremal)",
                       dict(MAP_ONLY, area_weight=1.0, area_target=0.05)),
    "area-0.1-attn": ("AMB + PC + COT (map only) + area 0.1 (extremal)",
                      dict(MAP_ONLY, area_weight=1.0, area_target=0.1)),
    "area-erasing-tv": ("AMB + PC + COT (map only) + area + erasing + smoothness",
                        dict(MAP_ONLY, area_weight=1.0, erasing_weight=1.0,
                             smoothness_weight=1.0)),
    "area3-erasing": ("AMB + PC + COT (map only) + area x3 + erasing",
                      dict(MAP_ONLY, area_weight=3.0, erasing_weight=1.0)),
    "area-erasing-all": ("AMB + PC + COT + area + erasing",
                         dict(PROPOSED, area_weight=1.0, erasing_weight=1.0)),
    "area-0.3w": ("AMB + PC + COT + area x0.3", dict(PROPOSED, area_weight=0.3)),
    "area-3w": ("AMB + PC + COT + area x3", dict(PROPOSED, area_weight=3.0)),
}
METHODS = ("attention", "cam", "gradcam")
# (key, label, scale): what the tables show per method.
SHOWN = (
    ("top1", "top-1 %", 100), ("pointing_game", "pointing", 1),
    ("energy_inside", "energy in object", 1), ("energy_inside_part", "energy in part", 1),
    ("energy_inside_normalised", "energy in object (min-max)", 1),
    ("energy_inside_part_normalised", "energy in part (min-max)", 1),
    ("rise_score", "RISE Score", 1), ("score", "sweep Score", 1),
    ("map_entropy", "entropy", 1), ("map_area_above_half", "area > 0.5", 1),
    ("map_entropy_normalised", "entropy (min-max)", 1),
    ("map_area_above_half_normalised", "area > 0.5 (min-max)", 1),
    ("top1_attention_shuffled", "top-1 % shuffled A", 100),
    ("top1_attention_uniform", "top-1 % uniform A", 100),
    ("top1_attention_inverted_matched", "top-1 % 1-A matched", 100),
    ("top1_occluded_part1", "top-1 % part 1 hidden", 100),
    ("top1_occluded_part2", "top-1 % part 2 hidden", 100),
    ("logp_occluded_part1", "log p(true) part 1 hidden", 1),
    ("logp_occluded_part2", "log p(true) part 2 hidden", 1),
    ("density_other_occluded_part1", "A's density on part 2, part 1 hidden", 1),
    ("density_other_occluded_part2", "A's density on part 1, part 2 hidden", 1),
)
# Keys the latest evaluation has; a cached one without them is redone.
NEWEST_KEYS = ("energy_inside_normalised",)
# Per-model values: shown on the attention row only.
MODEL_LEVEL = ("top1_attention", "top1_occluded", "logp_occluded", "density_other")
def evaluate_run(run_dir, source, split, limit):
    """The run's summary per method, cached beside the run."""
    path = os.path.join(run_dir, f"map-evaluation-{split}-{limit or 'all'}.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        # One cached before a metric existed is evaluated again.
        if all(key in summary.get("attention", {}) for key in NEWEST_KEYS):
            return summary
    from keras_amb.app import runs
    from keras_amb.explain import evaluation

    model = runs.Run.open(run_dir).load_model()
    results = evaluation.evaluate_methods(model, source, split, methods=METHODS,
                                          limit=limit, progress=False)
    summary = {m: {k: v for k, v in r.items() if k not in ("per_image", "curves", "params")}
               for m, r in results.items()}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(summary, f)
    return summary


def training_seconds(run_dir):
    """The seconds the run's epochs took, from its history.csv."""
    import csv

    path = os.path.join(run_dir, "history.csv")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return round(sum(float(row["seconds"] or 0) for row in csv.DictReader(f)), 1)


def ensure_trained(run_config, run_dir, log):
    """Trains (or resumes) the run unless it is finished; returns the
    seconds its epochs took (history.csv), whenever they ran."""
    from keras_amb.app import trainer

    if not os.path.isfile(os.path.join(run_dir, "model.keras")):
        resume = os.path.isfile(os.path.join(run_dir, "state.json"))
        trainer.train(run_config, run_dir=run_dir, resume=resume, log=log, verbose=2)
    return training_seconds(run_dir)


def paired(results, variant, seeds, first, second, key):
    """Per-seed `first[key] - second[key]`; `first`/`second` are
    `(variant, method)` pairs, `None` as variant meaning `variant`."""
    values = []
    for seed in seeds:
        a = results.get((first[0] or variant, seed), {}).get(first[1], {}).get(key)
        b = results.get((second[0] or variant, seed), {}).get(second[1], {}).get(key)
        values.append(None if a is None or b is None else a - b)
    return values


def report(results, names, seeds, header):
    lines = [header, ""]
    lines.append("## Means over seeds (per-seed values in the JSON)")
    lines.append("")
    cols = " | ".join(label for _, label, _ in SHOWN)
    lines.append(f"| variant | map | {cols} |")
    lines.append("|---|---|" + "---|" * len(SHOWN))
    for name in names:
        for method in METHODS:
            cells = []
            for key, _, scale in SHOWN:
                if method != "attention" and key.startswith(MODEL_LEVEL):
                    cells.append("")
                    continue
                mean, half = t_interval([results.get((name, s), {}).get(method, {}).get(key)
                                       for s in seeds])
                if mean is None:
                    cells.append("-")
                else:
                    text = f"{mean * scale:.3g}" if scale == 1 else f"{mean * scale:.1f}"
                    if half is not None:
                        text += f" ± {half * scale:.2g}" if scale == 1 else f" ± {half * scale:.1f}"
                    cells.append(text)
            lines.append(f"| {VARIANTS[name][0]} | {method} | " + " | ".join(cells) + " |")
    lines += ["", "## Section 4 lines: per-seed paired differences, mean ± 95% t-interval "
              "over seeds", ""]
    checks = (
        ("pointing: A - own Grad-CAM", (None, "attention"), (None, "gradcam"), "pointing_game", 1),
        ("energy in object: A - own Grad-CAM", (None, "attention"), (None, "gradcam"),
         "energy_inside", 1),
        ("energy in part: A - own Grad-CAM", (None, "attention"), (None, "gradcam"),
         "energy_inside_part", 1),
        ("energy in object, min-max maps: A - own Grad-CAM", (None, "attention"),
         (None, "gradcam"), "energy_inside_normalised", 1),
        ("energy in part, min-max maps: A - own Grad-CAM", (None, "attention"),
         (None, "gradcam"), "energy_inside_part_normalised", 1),
        ("RISE Score: A - own CAM", (None, "attention"), (None, "cam"), "rise_score", 1),
        ("top-1 - top-1 with shuffled A (points)", (None, "attention"), (None, "attention"),
         ("top1", "top1_attention_shuffled"), 100),
        ("top-1 - ABN's top-1 (points)", (None, "attention"), ("abn", "attention"), "top1", 100),
        ("part 1 hidden: top-1 - ABN's (points)", (None, "attention"), ("abn", "attention"),
         "top1_occluded_part1", 100),
        ("part 2 hidden: top-1 - ABN's (points)", (None, "attention"), ("abn", "attention"),
         "top1_occluded_part2", 100),
        ("part 1 hidden: A's density on part 2 - ABN's", (None, "attention"),
         ("abn", "attention"), "density_other_occluded_part1", 1),
        ("part 2 hidden: A's density on part 1 - ABN's", (None, "attention"),
         ("abn", "attention"), "density_other_occluded_part2", 1),
    )
    lines.append("| variant | " + " | ".join(c[0] for c in checks) + " |")
    lines.append("|---|" + "---|" * len(checks))
    table = {}
    for name in names:
        cells = []
        for label, first, second, key, scale in checks:
            if isinstance(key, tuple):
                values = []
                for seed in seeds:
                    r = results.get((name, seed), {}).get("attention", {})
                    a, b = r.get(key[0]), r.get(key[1])
                    values.append(None if a is None or b is None else a - b)
            else:
                values = paired(results, name, seeds, first, second, key)
            mean, half = t_interval(values)
            table.setdefault(name, {})[label] = values
            if mean is None:
                cells.append("-")
            else:
                cells.append(f"{mean * scale:+.3g}" + (f" ± {half * scale:.2g}" if half else ""))
        lines.append(f"| {VARIANTS[name][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=["abn", "no-mining", "paper", "area"],
                        choices=sorted(VARIANTS))
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--output", required=True, help="Folder of the runs.")
    parser.add_argument("--report", help="Write <report>.md and <report>.json.")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args(argv)

    import dataclasses

    from keras_amb.app import config as amb_config
    from keras_amb.data import sources

    start = time.time()
    base = amb_config.resolve(args.config)
    source = sources.source_for_data(dataclasses.replace(base.data, skip_bad_images=True),
                                     progress=False)
    os.makedirs(args.output, exist_ok=True)
    log_path = os.path.join(args.output, "log.txt")

    def log(line):
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    results, seconds = {}, {}
    for seed in args.seeds:
        abn_dir = os.path.join(args.output, f"seed{seed}-abn-pretrained")
        cfg = base.replace(seed=seed, architecture="abn", epochs=base.schedule.pretrain_epochs)
        seconds[f"seed{seed}-abn-pretrained"] = ensure_trained(cfg, abn_dir, log)
        for name in args.variants:
            run_dir = os.path.join(args.output, f"seed{seed}-{name}")
            cfg = base.replace(seed=seed, init_from=abn_dir, **VARIANTS[name][1])
            took = ensure_trained(cfg, run_dir, log)
            seconds[f"seed{seed}-{name}"] = took
            print(f"[seed {seed}] {name}: trained ({took:.0f} s of epochs)", flush=True)
            if args.train_only:
                continue
            results[(name, seed)] = evaluate_run(run_dir, source, args.split, args.limit)
            r = results[(name, seed)]["attention"]
            print(f"[seed {seed}] {name}: top-1 {r['top1']:.3f}, pointing "
                  f"{r.get('pointing_game')}, RISE {r['rise_score']:.3f}, shuffled "
                  f"{r['top1_attention_shuffled']:.3f}", flush=True)
    if args.train_only:
        return
    command = "python benchmarks/map_objectives.py " + " ".join(argv or sys.argv[1:])
    header = (f"# Map objectives on {args.config}, split {args.split}"
              f"{f' (first {args.limit})' if args.limit else ''}, seeds {args.seeds}\n\n"
              f"Command: `{command}`  \nWall time of this invocation: "
              f"{time.time() - start:.0f} s (runs and evaluations reused from earlier "
              f"invocations take none of it); the epochs of all the runs: "
              f"{sum(v or 0 for v in seconds.values()):.0f} s (each run's in the JSON, "
              "from its history.csv). 2-core CPU, TensorFlow backend unless the JSON "
              "says otherwise.")
    text, table = report(results, args.variants, args.seeds, header)
    print(text)
    if args.report:
        with open(args.report + ".md", "w", encoding="utf-8") as f:
            f.write(text)
        per_seed = {f"{name}/seed{seed}": results[(name, seed)] for name, seed in results}
        with open(args.report + ".json", "w", encoding="utf-8") as f:
            import keras

            json.dump({"command": command, "config": args.config, "split": args.split,
                       "backend": keras.backend.backend(),
                       "limit": args.limit, "seeds": args.seeds,
                       "variants": {n: VARIANTS[n] for n in args.variants},
                       "training_seconds": seconds, "per_seed": per_seed,
                       "paired_per_seed": table}, f, indent=1)


if __name__ == "__main__":
    main()
