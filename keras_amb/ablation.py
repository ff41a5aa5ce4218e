"""`keras-amb ablate`: the paper's Tables 1-4 on one dataset, over seeds.

Per seed: pre-train one ABN; from it, under the same budget (`epochs`),
train ABN (continued), the human-knowledge baseline (where the dataset has
masks), AMB, AMB+PC, AMB+COT and AMB+PC+COT; evaluate each on the test split.
"""

import copy
import json
import os

import numpy as np

VARIANTS = (
    ("ABN", {"model": "abn"}),
    ("ABN + human-edited attention", {"model": "abn", "attention_targets": "masks"}),
    ("AMB", {"model": "proposed", "amb": True, "pc": False, "cot": False}),
    ("AMB + PC", {"model": "proposed", "amb": True, "pc": True, "cot": False}),
    ("AMB + COT", {"model": "proposed", "amb": True, "pc": False, "cot": True}),
    ("AMB + PC + COT", {"model": "proposed", "amb": True, "pc": True, "cot": True}),
)

# Paper, Tables 1-4: top-1, top-5 [%], Insertion, Deletion, Score.
PAPER = {
    "caltech_birds2010": {
        "ABN": (31.68, 57.01, 0.21, 0.09, 0.12),
        "ABN + human-edited attention": (37.42, 62.08, 0.17, 0.16, 0.01),
        "AMB": (33.33, 58.56, 0.22, 0.08, 0.14),
        "AMB + PC": (45.10, 71.68, 0.29, 0.13, 0.17),
        "AMB + COT": (39.76, 66.57, 0.28, 0.12, 0.16),
        "AMB + PC + COT": (46.09, 69.24, 0.33, 0.13, 0.21),
    },
    "stanford_dogs": {
        "ABN": (71.81, 93.02, 0.42, 0.28, 0.14),
        "AMB": (71.99, 92.80, 0.41, 0.28, 0.13),
        "AMB + PC": (73.95, 94.37, 0.44, 0.30, 0.14),
        "AMB + COT": (73.59, 93.89, 0.46, 0.29, 0.17),
        "AMB + PC + COT": (73.46, 94.46, 0.58, 0.22, 0.36),
    },
}

COLUMNS = ("top1", "top5", "insertion", "deletion", "score", "rise_score", "pointing_game")


def ablate(base_config, seeds, root, has_masks, evaluate_fn, train_fn, log=print):
    """Trains and evaluates every variant for each seed; returns the results.

    `train_fn(config, run_dir, resume)` trains (or resumes) a run;
    `evaluate_fn(run_dir)` returns its evaluation dict. Finished runs are
    reused and interrupted ones resumed, so an interrupted ablation picks up
    where it stopped. Results: `{variant: [metrics per seed]}`.
    """

    def ensure(run_config, run_dir):
        if os.path.isfile(os.path.join(run_dir, "model.keras")):
            return False
        train_fn(run_config, run_dir, os.path.isfile(os.path.join(run_dir, "state.json")))
        return True

    results = {}
    for seed in seeds:
        abn_dir = os.path.join(root, f"seed{seed}-abn-pretrained")
        config = copy.deepcopy(base_config)
        config.update({"seed": seed, "model": "abn", "epochs": base_config["pretrain_epochs"],
                       "init_from": None, "attention_targets": None})
        log(f"[seed {seed}] pre-trained ABN ({config['epochs']} epochs): {abn_dir}")
        ensure(config, abn_dir)
        for name, overrides in VARIANTS:
            if overrides.get("attention_targets") and not has_masks:
                continue
            slug = name.lower().replace(" + ", "-").replace(" ", "-")
            run_dir = os.path.join(root, f"seed{seed}-{slug}")
            config = copy.deepcopy(base_config)
            config.update({"seed": seed, "init_from": abn_dir, "attention_targets": None})
            config.update(overrides)
            log(f"[seed {seed}] {name}: {config['epochs']} epochs from the pre-trained ABN")
            ensure(config, run_dir)
            metrics = evaluate_fn(run_dir)
            results.setdefault(name, []).append(metrics)
            log(f"[seed {seed}] {name}: top-1 {metrics['top1']:.4f}, score {metrics['score']:.3f}")
    return results


def summarise(results):
    """Mean and standard deviation over seeds of each variant's metrics."""
    table = {}
    for name, runs in results.items():
        row = {}
        for column in COLUMNS:
            values = [r.get(column) for r in runs if r.get(column) is not None]
            if values:
                row[column] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                               "n": len(values)}
        table[name] = row
    return table


def markdown(table, dataset):
    paper = PAPER.get(dataset, {})

    def cell(row, key, scale=1.0, digits=3):
        if key not in row:
            return "-"
        m, s = row[key]["mean"] * scale, row[key]["std"] * scale
        return f"{m:.{digits}f} ± {s:.{digits}f}"

    lines = [
        f"Tables 1-4 on {dataset} (mean ± std over seeds; accuracy in %)",
        "",
        "| model | top-1 | top-5 | Insertion | Deletion | Score | RISE score | pointing game |"
        + (" paper top-1 / top-5 | paper Ins / Del / Score |" if paper else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if paper else ""),
    ]
    for name, row in table.items():
        line = (f"| {name} | {cell(row, 'top1', 100, 2)} | {cell(row, 'top5', 100, 2)} | "
                f"{cell(row, 'insertion')} | {cell(row, 'deletion')} | {cell(row, 'score')} | "
                f"{cell(row, 'rise_score')} | {cell(row, 'pointing_game')} |")
        if paper:
            p = paper.get(name)
            line += (f" {p[0]:.2f} / {p[1]:.2f} | {p[2]:.2f} / {p[3]:.2f} / {p[4]:.2f} |"
                     if p else " - | - |")
        lines.append(line)
    return "\n".join(lines)


def write_report(table, dataset, root):
    text = markdown(table, dataset)
    with open(os.path.join(root, "ablation.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(os.path.join(root, "ablation.json"), "w", encoding="utf-8") as f:
        json.dump({"dataset": dataset, "table": table, "paper": PAPER.get(dataset)}, f, indent=2)
    return text
