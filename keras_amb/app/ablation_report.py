"""The ablation's statistics and report: what `keras-amb ablate` writes.

`summarise` turns the evaluations of every variant and seed into a table:
the mean and standard deviation over seeds of each metric, and for each
variant the paired difference to ABN on the same test images, with two 95%
intervals. The one that counts is over seeds (`t_interval`): each seed's
mean difference is one value, and Student's t interval of their mean
includes the spread between trainings (METHOD.md, "Intervals"). The second
is a bootstrap over test images: in each of `BOOTSTRAP_SAMPLES` resamples,
every seed's test images are drawn with replacement (the same draw for the
variant and ABN), and the mean difference is taken over all seeds' draws;
the interval is the 2.5th and 97.5th percentile. It says how sure the
difference is given these trained models and test images only, and on map
densities it was about 20 times narrower than the spread between seeds.

`write_report` writes the table as `ablation.md` (beside the paper's numbers
where the run is the paper's setup: `paper_comparison`), `ablation.json`
and `ablation.png`. Training and evaluating the variants is
`keras_amb/app/ablation.py`.

Example:

```python
from keras_amb.app import ablation_report
table = ablation_report.summarise({"ABN": [abn_eval], "AMB": [amb_eval]})
print(ablation_report.markdown(table, "synthetic"))
```
"""

import json
import os

import numpy as np

from keras_amb.files import atomic_write_text

BASELINE = "ABN"

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

COLUMNS = (
    "top1", "top5", "insertion", "deletion", "score", "rise_score", "pointing_game",
    "coverage_both_parts", "top1_occluded_part1", "top1_occluded_part2",
)
# Metrics whose difference to ABN gets a confidence interval.
PAIRED = ("top1", "score", "rise_score", "pointing_game_part", "coverage_both_parts",
          "top1_occluded_part1", "top1_occluded_part2", "density_part1", "density_part2",
          "top1_attention_uniform", "top1_attention_shuffled")
BOOTSTRAP_SAMPLES = 2000


def paper_comparison(dataset, model):
    """`(paper numbers or None, reason)`: the paper's numbers are only shown
    beside runs of the paper's setup (its dataset, a ResNet-50, from scratch).

    Args:
        dataset: str, the data section's `dataset`.
        model: `keras_amb.app.run_config.ModelConfig`, the config's model section.
    """
    if dataset not in PAPER:
        return None, f"the paper reports no numbers for {dataset!r}"
    if model.weights is not None:
        return None, (
            f"this run starts from {model.weights!r} weights; the paper's numbers are "
            f"from scratch (use --config {dataset}_paper)"
        )
    if not str(model.backbone).startswith("resnet50"):
        return None, (
            f"this run uses backbone {model.backbone!r}; the paper's numbers are "
            f"ResNet-50 (use --config {dataset}_paper)"
        )
    return PAPER[dataset], ""


def mean_std(values):
    """`{mean, std, n}` of the values that are not None; None if none are."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


# Two-sided 95% quantiles of Student's t by degrees of freedom (more: ~1.96).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228}


def t_interval(values):
    """`(mean, half_width)` of the 95% t interval of the mean of `values`
    (None and NaN left out); `(mean, None)` with one value, `(None, None)`
    with none.

    Example:
    >>> mean, half = t_interval([1.0, 2.0, 3.0])  # sd 1: 4.303 / sqrt(3)
    >>> mean, round(half, 3)
    (2.0, 2.484)
    """
    values = [float(v) for v in values if v is not None and not np.isnan(v)]
    if not values:
        return None, None
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None
    sd = float(np.std(values, ddof=1))
    return mean, T95.get(len(values) - 1, 1.96) * sd / float(np.sqrt(len(values)))


def paired_difference(variant_runs, baseline_runs, metric, samples=BOOTSTRAP_SAMPLES, seed=0):
    """Mean per-image difference variant - baseline over seeds, with the
    95% t interval over seeds (`seed_ci95`, None with one seed; each seed's
    mean difference in `per_seed`) and the bootstrap interval over images
    (`ci95`; see the module docstring); None if a run lacks `metric`."""
    diffs = []
    for run, base in zip(variant_runs, baseline_runs):
        a = run.get("per_image", {}).get(metric)
        b = base.get("per_image", {}).get(metric)
        if a is None or b is None or len(a) != len(b):
            return None
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        diffs.append(d[~np.isnan(d)])
    if not diffs or not all(len(d) for d in diffs):
        return None
    rng = np.random.default_rng(seed)
    total = sum(len(d) for d in diffs)
    means = np.zeros(samples)
    for d in diffs:
        draws = rng.integers(0, len(d), (samples, len(d)))
        means += d[draws].sum(axis=1)
    means /= total
    point = float(np.concatenate(diffs).mean())
    low, high = np.percentile(means, [2.5, 97.5])
    per_seed = [float(d.mean()) for d in diffs]
    seed_mean, half = t_interval(per_seed)
    seed_ci = None if half is None else [seed_mean - half, seed_mean + half]
    return {"mean": point, "ci95": [float(low), float(high)], "images": total,
            "seeds": len(diffs), "per_seed": per_seed, "seed_ci95": seed_ci}


def summarise(results):
    """Per variant: mean ± std over seeds of each column, and the paired
    difference to ABN (with its CI) of each `PAIRED` metric."""
    table = {}
    baseline = results.get(BASELINE, [])
    for name, runs in results.items():
        row = {}
        for column in COLUMNS:
            stats = mean_std([r.get(column) for r in runs])
            if stats is not None:
                row[column] = stats
        if name != BASELINE and baseline:
            row["vs_abn"] = {
                metric: diff for metric in PAIRED
                if (diff := paired_difference(runs, baseline, metric)) is not None
            }
        table[name] = row
    return table


def markdown(table, dataset, paper=None, paper_note=""):
    def cell(row, key, scale=1.0, digits=3):
        if key not in row:
            return "-"
        m, s = row[key]["mean"] * scale, row[key]["std"] * scale
        return f"{m:.{digits}f} ± {s:.{digits}f}"

    n = max((r[c]["n"] for r in table.values() for c in r if c in COLUMNS), default=0)
    two_parts = any("coverage_both_parts" in r for r in table.values())
    header = ["model", "top-1 %", "top-5 %", "Insertion", "Deletion", "Score", "RISE score",
              "pointing game"]
    if two_parts:
        header += ["both parts covered", "top-1 % part 1 hidden", "top-1 % part 2 hidden"]
    if paper:
        header += ["paper top-1 / top-5", "paper Ins / Del / Score"]
    lines = [
        f"Tables 1-4 on {dataset}: mean ± std over {n} seed(s); accuracy in %.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, row in table.items():
        cells = [name, cell(row, "top1", 100, 2), cell(row, "top5", 100, 2),
                 cell(row, "insertion"), cell(row, "deletion"), cell(row, "score"),
                 cell(row, "rise_score"), cell(row, "pointing_game")]
        if two_parts:
            cells += [cell(row, "coverage_both_parts"), cell(row, "top1_occluded_part1", 100, 2),
                      cell(row, "top1_occluded_part2", 100, 2)]
        if paper:
            p = paper.get(name)
            cells += ([f"{p[0]:.2f} / {p[1]:.2f}", f"{p[2]:.2f} / {p[3]:.2f} / {p[4]:.2f}"]
                      if p else ["-", "-"])
        lines.append("| " + " | ".join(cells) + " |")
    if not paper and paper_note:
        lines += ["", f"The paper's numbers are not shown: {paper_note}."]
    diffs = [(name, row["vs_abn"]) for name, row in table.items() if row.get("vs_abn")]
    if diffs:
        metrics = [m for m in PAIRED if any(m in d for _, d in diffs)]
        lines += [
            "",
            "Paired difference to ABN (variant - ABN, same test images): the mean over "
            "seeds with its 95% t interval over seeds (the one that counts; * where it "
            "excludes 0), then the 95% bootstrap interval over test images pooled across "
            "seeds, which leaves out the spread between trainings.",
            "",
            "| model | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for name, d in diffs:
            cells = []
            for m in metrics:
                if m not in d:
                    cells.append("-")
                    continue
                low, high = d[m]["ci95"]
                seeds = d[m].get("seed_ci95")
                if seeds:
                    star = "*" if seeds[0] > 0 or seeds[1] < 0 else ""
                    over_seeds = f"[{seeds[0]:+.3f}, {seeds[1]:+.3f}]{star}"
                else:
                    over_seeds = "[one seed]"
                cells.append(f"{d[m]['mean']:+.3f} {over_seeds} (images: "
                             f"[{low:+.3f}, {high:+.3f}])")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


FIGURE_METRICS = (
    ("top1", "top-1"),
    ("score", "Insertion - Deletion (threshold sweep)"),
    ("coverage_both_parts", "both parts covered"),
    ("top1_occluded", "top-1, one part hidden (mean of both)"),
    ("pointing_game", "pointing game"),
)


def plot(table, path, dataset):
    """Bars (mean over seeds) with error bars (std) for the main metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def value(row, metric):
        if metric == "top1_occluded":
            parts = [row.get(f"top1_occluded_part{p}") for p in (1, 2)]
            if None in parts:
                return None
            return {"mean": (parts[0]["mean"] + parts[1]["mean"]) / 2,
                    "std": (parts[0]["std"] + parts[1]["std"]) / 2}
        return row.get(metric)

    shown = [(m, t) for m, t in FIGURE_METRICS
             if any(value(r, m) is not None for r in table.values())]
    names = list(table)
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 4.6), squeeze=False)
    colours = plt.cm.tab10(np.arange(len(names)) % 10)
    for ax, (metric, title) in zip(axes[0], shown):
        means = [value(table[n], metric)["mean"] if value(table[n], metric) else np.nan
                 for n in names]
        stds = [value(table[n], metric)["std"] if value(table[n], metric) else 0.0
                for n in names]
        ax.bar(range(len(names)), means, yerr=stds, color=colours, capsize=3)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Ablation on {dataset} (bars: mean over seeds, error bars: std)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(table, config, root, results=None, seconds=None):
    """Writes `ablation.md`, `ablation.json` and `ablation.png` to `root`
    for the ablation of `config` (a `RunConfig`); returns the markdown text."""
    dataset = config.data.dataset
    paper, note = paper_comparison(dataset, config.model)
    text = markdown(table, dataset, paper, note)
    atomic_write_text(os.path.join(root, "ablation.md"), text + "\n")
    report = {"dataset": dataset, "table": table, "paper": paper, "paper_note": note,
              "bootstrap_samples": BOOTSTRAP_SAMPLES, "seconds": seconds}
    atomic_write_text(os.path.join(root, "ablation.json"), json.dumps(report, indent=2))
    plot(table, os.path.join(root, "ablation.png"), dataset)
    return text
