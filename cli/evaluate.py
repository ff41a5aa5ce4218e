"""`keras-amb evaluate`."""

import contextlib
import json
import os
import sys

import click

from keras_amb.cli.common import BACKENDS
from keras_amb.cli.common import run_reporting_errors
from keras_amb.cli.common import set_backend


@click.command()
@click.option("--model", "-m", "run", required=True, type=click.Path(exists=True),
              help="Run folder or .keras file.")
@click.option("--dataset", "-d", help="Dataset (default: the run's own, from its config.yaml; "
              "required for a bare .keras file).")
@click.option("--data-dir", type=click.Path(), help="Where TFDS keeps its datasets.")
@click.option("--split", default="test", show_default=True,
              type=click.Choice(["train", "val", "test", "val_occluded_part1",
                                 "val_occluded_part2", "test_occluded_part1",
                                 "test_occluded_part2"]),
              help="Split to evaluate; *_occluded_partN: that split with part N painted "
              "over (synthetic v2 and v3: part 1 is v3's easy cue, part 2 its hard one).")
@click.option("--method", type=click.Choice(["attention", "cam", "gradcam", "all"]),
              default="attention", show_default=True,
              help="Which map Insertion/Deletion and localisation score; 'all' scores each.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N examples.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--thresholds", type=click.IntRange(min=2), default=11, show_default=True,
              help="Thresholds of the paper's Insertion/Deletion sweep over [0, 1].")
@click.option("--rise-steps", type=click.IntRange(min=1), default=16, show_default=True,
              help="Steps of RISE's pixel-ranking Insertion/Deletion.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True,
              help="Print a table, or one JSON object (with --method all, keyed by method). "
              "--json is short for --format json.")
@click.option("--json", "as_json", is_flag=True, hidden=True)  # `--format json`; goes in 1.0
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Where the curves PNG and results JSON go. Default: <run>/evaluation/.")
@click.option("--backend", type=click.Choice(BACKENDS), help="Keras backend.")
def evaluate(run, dataset, data_dir, split, method, limit, batch_size, thresholds,
             rise_steps, fmt, as_json, output, backend):
    """Measure accuracy, faithfulness (Insertion/Deletion) and localisation.

    \b
    Reports perception top-1/top-5 and attention-branch top-1; Insertion,
    Deletion and Score by the paper's threshold sweep (on the raw attention
    map; CAM and Grad-CAM normalised) and by RISE's pixel ranking; and, where
    the dataset has masks or boxes, the pointing game, attention energy
    inside the object and IoU of the thresholded map. On synthetic version 2
    also: each part's share of the attention, the fraction of images with
    both parts covered, and top-1 with each part painted over.
    \b
    Progress goes to standard error.
    \b
    Examples:
      keras-amb evaluate --model saved_models/synthetic-mining-... --format json
      keras-amb evaluate --model saved_models/synthetic-mining-... --method all > report.txt
    """
    as_json = as_json or fmt == "json"
    set_backend(backend, models=[run])
    run_reporting_errors(_evaluate, run, dataset, data_dir, split, method, limit, batch_size,
                         thresholds, rise_steps, as_json, output)


def _evaluate(run, dataset, data_dir, split, method, limit, batch_size, thresholds,
              rise_steps, as_json, output):
    from keras_amb.app import config as amb_config
    from keras_amb.app import safety
    from keras_amb.data import sources
    from keras_amb.explain import evaluation
    from keras_amb.explain import maps as explain_maps
    from keras_amb.files import atomic_write_text
    from keras_amb.app.run_config import DataConfig
    from keras_amb.app.runs import Run

    opened = Run.open(run)
    config = opened.config()
    dataset = dataset or config.get("dataset")
    if not dataset:
        raise amb_config.ConfigError(f"{run}: a bare model file; pass --dataset")
    if output is None:
        output = opened.output_folder("evaluation")
    safety.check_output_folder(output, "--output")  # before the work, not after it
    model = opened.load_model()
    # The library's progress bars write to standard output: send them to
    # standard error, so that only the report is on standard output.
    with contextlib.redirect_stdout(sys.stderr):
        source = sources.source_for_data(DataConfig(
            dataset=dataset, data_dir=data_dir or config.get("data_dir"),
            skip_bad_images=True,
            synthetic=config.get("synthetic") or {} if dataset == config.get("dataset") else {},
        ))
    for _, reason in source.skipped:
        from keras_amb.names import for_terminal

        click.echo(f"skipped: {for_terminal(reason)}", err=True)
    methods = explain_maps.METHODS if method == "all" else (method,)
    with contextlib.redirect_stdout(sys.stderr):
        results = evaluation.evaluate_methods(
            model, source, split=split, batch_size=batch_size, methods=methods, limit=limit,
            thresholds=thresholds, rise_steps=rise_steps,
        )
    summaries = {}
    for each in methods:
        result = results[each]
        plot = evaluation.plot_curves(
            result, os.path.join(output, f"{split}-{each}-curves.png"),
            title=f"{opened.name} ({split}, {each})")
        atomic_write_text(os.path.join(output, f"{split}-{each}.json"),
                          json.dumps(result, indent=2))
        summaries[each] = evaluation.summary(result)
        if not as_json:
            _print_table(opened.name, source.name, split, each, result, plot)
    if as_json:
        click.echo(json.dumps(summaries if method == "all" else summaries[method]))


def _print_table(name, dataset, split, method, result, plot):
    click.echo(f"\n{name} on {dataset} {split} ({result['examples']} images, map: {method})")
    rows = [
        ("top-1 (perception)", result["top1"]), ("top-5 (perception)", result["top5"]),
        ("top-1 (attention branch)", result["att_top1"]),
        ("Insertion / Deletion / Score (threshold sweep)",
         f"{result['insertion']:.3f} / {result['deletion']:.3f} / {result['score']:.3f}"),
        ("Insertion / Deletion / Score (RISE)",
         f"{result['rise_insertion']:.3f} / {result['rise_deletion']:.3f} / {result['rise_score']:.3f}"),
    ]
    labels = {
        "pointing_game": "pointing game (object)", "energy_inside": "energy inside (object)",
        "energy_inside_normalised": "energy inside (object, min-max map)",
        "iou": "IoU at 0.5 (object)", "pointing_game_part": "pointing game (parts)",
        "energy_inside_part": "energy inside (parts)",
        "energy_inside_part_normalised": "energy inside (parts, min-max map)",
        "iou_part": "IoU at 0.5 (parts)",
        "energy_part1": "energy in part 1 (head)", "energy_part2": "energy in part 2 (tail)",
        "coverage_both_parts": "both parts covered", "top1_occluded_part1": "top-1, part 1 hidden",
        "top1_occluded_part2": "top-1, part 2 hidden",
    }
    for key, label in labels.items():
        if result.get(key) is not None:
            rows.append((label, result[key]))
    for label, value in rows:
        click.echo(f"  {label:48s} {value if isinstance(value, str) else f'{value:.4f}'}")
    p = result["params"]
    click.echo(f"  (threshold sweep: {p['thresholds']} thresholds in [0, 1] on the "
               f"{p['threshold_map']}, baseline {p['threshold_baseline']}; RISE: "
               f"{p['rise_steps']} steps, {p['rise_blur']})")
    click.echo(f"Curves: {plot}")
