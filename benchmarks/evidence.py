"""Evidence II: does ABN's attention miss evidence, and does mining find it?

On synthetic version 3 (one easy and one hard cue per class, each enough
alone; `configs/synthetic_v3.yaml`), per seed:

1. **Premise.** Pre-train an ABN; on the validation split, measure top-1
   with both cues, with the easy cue hidden and with the hard cue hidden,
   and the attention's mass density on each cue (1 = uniform).
2. **Variants** from that ABN, each for `--epochs`, every result on the
   validation split (nothing here looks at the test split): ABN continued;
   AMB at the paper's L_am weight; the PC sweep (AMB + PC at each
   `--pc-weights`); the full model at the best PC weight by validation
   top-1; AMB + COT; the mining-gradient switch (L_am at weight 1 and COT,
   each updating every weight or the attention map alone); the rest of the
   L_am weight sweep (0.01, 0.1) and sigma (0.3, 0.7 with COT), in that
   order of importance.
3. **Report.** Per variant: top-1, top-1 with each cue hidden, cue
   densities, map statistics, the intervention test, and the paired
   difference to ABN with a 95% bootstrap CI over images
   (`keras_amb.app.ablation`), plus each run's learning curve (history.csv).

Runs are reused when the output folder already holds them, so an
interrupted run continues. Example (about 45 min per seed on a 2-core CPU):

    python benchmarks/evidence.py --seeds 1 --output /tmp/evidence
"""

import argparse
import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Parts 1 and 2 are version 3's easy and hard cues (version 2's head and tail).
COLUMNS = (
    ("top1", "top-1 %", 100), ("top1_occluded_part1", "top-1 % part 1 hidden", 100),
    ("top1_occluded_part2", "top-1 % part 2 hidden", 100),
    ("density_part1", "density part 1", 1), ("density_part2", "density part 2", 1),
    ("map_area_above_half", "map area > 0.5", 1), ("map_entropy", "map entropy", 1),
    ("map_concentration", "concentration", 1), ("score", "Score", 1),
    ("top1_attention_uniform", "top-1 % uniform A", 100),
    ("top1_attention_shuffled", "top-1 % shuffled A", 100),
    ("top1_attention_inverted", "top-1 % 1 - A", 100),
    ("top1_attention_object", "top-1 % A = object", 100),
)
PAIRED = ("top1", "top1_occluded_part1", "top1_occluded_part2", "density_part2",
          "top1_attention_shuffled")


def variants(pc_weights):
    proposed = {"architecture": "proposed", "amb": True, "pc": False, "cot": False}
    rows = [
        ("ABN", {"architecture": "abn"}),
        ("AMB", dict(proposed)),
    ]
    for weight in pc_weights:
        rows.append((f"AMB + PC (pc_weight {weight:g})", dict(proposed, pc=True,
                                                             pc_weight=weight)))
    rows += [
        ("AMB + COT", dict(proposed, cot=True)),
        ("AMB + COT, attention only", dict(proposed, cot=True, amb_gradient="attention")),
        ("AMB, L_am x1, attention only", dict(proposed, amb_weight=1.0,
                                              amb_gradient="attention")),
        ("AMB, L_am x1", dict(proposed, amb_weight=1.0)),
    ]
    # The rest of the mining-strength sweep, and the mask threshold sigma.
    rows += [(f"AMB, L_am x{w:g}", dict(proposed, amb_weight=w)) for w in (0.01, 0.1)]
    rows += [(f"AMB + COT, sigma {t:g}", dict(proposed, cot=True, mask_threshold=t))
             for t in (0.3, 0.7)]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic_v3")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--pc-weights", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--split", default="val")
    parser.add_argument("--only", nargs="*",
                        help="of the mining-gradient rows, run only these (names); the "
                        "baseline, AMB, the PC sweep and the full model always run")
    parser.add_argument("--rows", nargs="+",
                        help="run only ABN and these variants (names as in the report, e.g. "
                        "'AMB, L_am x0.1'): no PC sweep and no full model")
    parser.add_argument("--image-size", type=int,
                        help="draw the synthetic images and train at this size (v3 is "
                        "released at 64; the premise probe found the easy/hard density "
                        "ratio highest at 128)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the variants already evaluated in --output")
    args = parser.parse_args(argv)

    from keras_amb.app import ablation
    from keras_amb.app import config as amb_config
    from keras_amb.app import runs
    from keras_amb.app import trainer
    from keras_amb.data import sources
    from keras_amb.explain import evaluation

    start = time.time()
    overrides = {"epochs": args.epochs, "pretrain_epochs": args.pretrain_epochs}
    if args.image_size:
        overrides.update({"image_size": args.image_size,
                          "synthetic.image_size": args.image_size})
    base = amb_config.resolve(args.config, overrides)
    source = sources.source_for_data(base.data, progress=False)
    os.makedirs(args.output, exist_ok=True)
    log = lambda line: print(line, flush=True)  # noqa: E731

    def train_fn(config, run_dir, resume):
        trainer.train(config, run_dir=run_dir, resume=resume, log=log, verbose=2)

    def evaluate_fn(run_dir):
        model = runs.Run.open(run_dir).load_model()
        return evaluation.evaluate(model, source, args.split, progress=False)

    rows = variants(args.pc_weights)
    # In order of importance, so that an interrupted run has the main rows:
    # the baseline, the paper's AMB, the PC sweep and the full model at the
    # PC weight that did best on the validation split, then the switch.
    pc_rows = [r for r in rows if r[0].startswith("AMB + PC (")]
    first = [r for r in rows if r[0] in ("ABN", "AMB")] + pc_rows
    if args.report_only:
        write(_evaluated(args.output, rows, args.pc_weights, args.seeds), args, start,
              evaluate_fn)
        return
    if args.rows:
        names = {name for name, _ in rows}
        unknown = [name for name in args.rows if name not in names]
        if unknown:
            parser.error(f"--rows: unknown variant(s) {unknown}; the variants: {sorted(names)}")
        chosen = [r for r in rows if r[0] == "ABN" or r[0] in args.rows]
        results = ablation.ablate(base, range(args.seeds), args.output, False, evaluate_fn,
                                  train_fn, log=log, variants=chosen)
        write(results, args, start, evaluate_fn)
        return
    results = ablation.ablate(base, range(args.seeds), args.output, False, evaluate_fn,
                              train_fn, log=log, variants=first)
    if pc_rows:
        best = max((n for n, _ in pc_rows), key=lambda n: sum(r["top1"] for r in results[n]))
        weight = float(best.split("pc_weight ")[1].rstrip(")"))
        log(f"PC sweep: best pc_weight by validation top-1: {weight:g}")
        full = [(f"AMB + PC + COT (pc_weight {weight:g})", {
            "architecture": "proposed", "amb": True, "pc": True, "cot": True,
            "pc_weight": weight})]
        results.update(ablation.ablate(base, range(args.seeds), args.output, False,
                                       evaluate_fn, train_fn, log=log, variants=full))
        write(results, args, start, evaluate_fn)
    rest = [r for r in rows if r not in first and (args.only is None or r[0] in args.only)]
    for row in rest:
        results.update(ablation.ablate(base, range(args.seeds), args.output, False,
                                       evaluate_fn, train_fn, log=log, variants=[row]))
        write(results, args, start, evaluate_fn)
    write(results, args, start, evaluate_fn)


def _evaluated(root, rows, pc_weights, seeds):
    """`{variant: [evaluation per seed]}` of the variants every seed has."""
    from keras_amb.app import ablation

    names = [name for name, _ in rows] + [
        f"AMB + PC + COT (pc_weight {w:g})" for w in pc_weights]
    results = {}
    for name in names:
        paths = [os.path.join(root, f"seed{s}-{ablation.variant_folder(name)}",
                              "ablation-evaluation.json") for s in range(seeds)]
        if all(os.path.isfile(p) for p in paths):
            results[name] = []
            for path in paths:
                with open(path, encoding="utf-8") as f:
                    results[name].append(json.load(f))
    return results


def write(results, args, start, evaluate_fn):
    """Writes evidence.md / evidence.json from the runs so far."""
    from keras_amb.app import ablation_report

    premise = []
    for seed in range(args.seeds):
        path = os.path.join(args.output, f"seed{seed}-abn-pretrained", "premise-evaluation.json")
        if not os.path.isfile(path):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(evaluate_fn(os.path.dirname(path)), f)
        with open(path, encoding="utf-8") as f:
            premise.append(json.load(f))
    everything = {"ABN, pre-trained (premise)": premise, **results}
    table = ablation_report.summarise(everything)
    for name, runs in everything.items():  # the columns ablation_report.COLUMNS lacks
        for key, _, _ in COLUMNS:
            stats = ablation_report.mean_std([r.get(key) for r in runs])
            if stats is not None:
                table[name][key] = stats
    text = report(table, args, time.time() - start) + "\n\n" + seed_intervals(everything)
    curves = learning_curves(args.output)
    with open(os.path.join(args.output, "evidence.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n\n" + curves + "\n")
    plot(table, os.path.join(args.output, "evidence.png"), args.config)
    with open(os.path.join(args.output, "evidence.json"), "w", encoding="utf-8") as f:
        json.dump({"table": table, "args": vars(args)}, f, indent=2)
    print(text + "\n\n" + curves)


FIGURE = (("top1_occluded_part1", "top-1, part 1 (v3: easy cue) hidden"),
          ("density_part1", "attention density on part 1"),
          ("density_part2", "attention density on part 2 (v3: hard cue)"),
          ("top1_attention_uniform", "top-1 with a uniform map"))


def plot(table, path, config):
    """Bars (mean over seeds) with error bars (std) of the claim's metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(table)
    fig, axes = plt.subplots(1, len(FIGURE), figsize=(4.2 * len(FIGURE), 5.2))
    colours = plt.cm.tab10(np.arange(len(names)) % 10)
    for ax, (key, title) in zip(axes, FIGURE):
        means = [table[n].get(key, {}).get("mean", np.nan) for n in names]
        stds = [table[n].get(key, {}).get("std", 0.0) for n in names]
        ax.bar(range(len(names)), means, yerr=stds, color=colours, capsize=3)
        if key.startswith("density"):
            ax.axhline(1.0, color="grey", lw=1, ls="--")
            title += "\n(dashed: a uniform map)"
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Evidence on {config}, validation split (bars: mean over seeds, "
                 "error bars: std)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(table, args, seconds):
    n = args.seeds
    lines = [
        f"Evidence on {args.config}, split {args.split!r}, {n} seed(s), "
        f"{args.pretrain_epochs} pre-training + {args.epochs} epochs per variant; "
        f"mean ± std over seeds ({seconds / 60:.1f} min).",
        "",
        "| model | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for name, row in table.items():
        cells = []
        for key, _, scale in COLUMNS:
            stats = row.get(key)
            if stats is None:
                cells.append("-")
                continue
            digits = 1 if scale == 100 else 3
            cells.append(f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Paired difference to ABN (continued), same images, pooled over seeds, "
              "95% bootstrap CI over images; * where the CI excludes 0.", "",
              "| model | " + " | ".join(PAIRED) + " |", "|---|" + "---|" * len(PAIRED)]
    for name, row in table.items():
        diffs = row.get("vs_abn")
        if not diffs or name.startswith("ABN"):
            continue
        cells = []
        for metric in PAIRED:
            d = diffs.get(metric)
            if d is None:
                cells.append("-")
                continue
            low, high = d["ci95"]
            star = "*" if low > 0 or high < 0 else ""
            cells.append(f"{d['mean']:+.3f} [{low:+.3f}, {high:+.3f}]{star}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Student's t quantile (0.975) by degrees of freedom, for intervals over seeds.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262}


def seed_intervals(everything, metric="top1"):
    """Per-seed differences to ABN in `metric`, with a 95% t-interval over
    seeds: the spread between trainings, beside the bootstrap over images."""
    import numpy as np

    base = everything.get("ABN")
    if not base or len(base) < 2:
        return ""
    lines = [f"Difference to ABN in {metric} (points) per seed, with a 95% t-interval over "
             f"the {len(base)} seeds (the spread between trainings; the bootstrap above is "
             "over images):", "",
             "| model | per seed | mean [95% interval over seeds] |", "|---|---|---|"]
    for name, runs in everything.items():
        if name.startswith("ABN") or len(runs) != len(base):
            continue
        diffs = np.array([100 * (r[metric] - b[metric]) for r, b in zip(runs, base)])
        half = T_975.get(len(diffs) - 1, 1.96) * diffs.std(ddof=1) / np.sqrt(len(diffs))
        lines.append(f"| {name} | {', '.join(f'{d:+.2f}' for d in diffs)} | "
                     f"{diffs.mean():+.2f} [{diffs.mean() - half:+.2f}, "
                     f"{diffs.mean() + half:+.2f}] |")
    return "\n".join(lines)


def learning_curves(root):
    """Validation top-1 per epoch of every run (from its history.csv)."""
    lines = ["Learning curves (validation top-1 per epoch):", ""]
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "history.csv")
        if not os.path.isfile(path):
            continue
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        values = " ".join(f"{float(r['val_top1']):.3f}" for r in rows if r.get("val_top1"))
        grads = rows[-1] if rows else {}
        forces = ", ".join(f"{k[9:]} {float(v):.2g}" for k, v in grads.items()
                           if k.startswith("map_grad_") and v)
        lines.append(f"- {name}: {values}" + (f" (last epoch's map gradients: {forces})"
                                              if forces else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
