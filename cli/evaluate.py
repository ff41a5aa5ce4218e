"""`keras-amb evaluate`."""

import json
import os

import click

from keras_amb.cli.main import BACKENDS
from keras_amb.cli.main import _set_backend
from keras_amb.cli.main import run_reporting_errors


@click.command()
@click.option("--model", "-m", "run", required=True, type=click.Path(exists=True),
              help="Run folder or .keras file.")
@click.option("--dataset", "-d", help="Dataset (default: the run's own, from its config.yaml).")
@click.option("--data-dir", type=click.Path(), help="Where TFDS keeps its datasets.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--method", type=click.Choice(["attention", "cam", "gradcam"]), default="attention",
              show_default=True, help="Which map Insertion/Deletion and localisation score.")
@click.option("--limit", type=int, help="Evaluate only the first N examples.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--thresholds", type=int, default=11, show_default=True,
              help="Thresholds of the paper's Insertion/Deletion sweep over [0, 1].")
@click.option("--rise-steps", type=int, default=16, show_default=True,
              help="Steps of RISE's pixel-ranking Insertion/Deletion.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Where the curves PNG and results JSON go. Default: <run>/evaluation/.")
@click.option("--backend", type=click.Choice(BACKENDS), help="Keras backend.")
def evaluate(run, dataset, data_dir, split, method, limit, batch_size, thresholds,
             rise_steps, as_json, output, backend):
    """Measure accuracy, faithfulness (Insertion/Deletion) and localisation.

    \b
    Reports perception top-1/top-5 and attention-branch top-1; Insertion,
    Deletion and Score by the paper's threshold sweep and by RISE's pixel
    ranking; and, where the dataset has masks or boxes, the pointing game,
    attention energy inside the object and IoU of the thresholded map.
    \b
    Example:
      keras-amb evaluate --model saved_models/synthetic-proposed-... --json
    """
    _set_backend(backend)
    run_reporting_errors(_evaluate, run, dataset, data_dir, split, method, limit, batch_size,
                         thresholds, rise_steps, as_json, output)


def _evaluate(run, dataset, data_dir, split, method, limit, batch_size, thresholds,
              rise_steps, as_json, output):
    from keras_amb import config as amb_config
    from keras_amb import runs
    from keras_amb import trainer
    from keras_amb.data import sources
    from keras_amb.explain import evaluation

    run_dir = runs.run_dir_of(run)
    config_path = os.path.join(run_dir, "config.yaml")
    config = amb_config.load_yaml(config_path) if os.path.isfile(config_path) else {}
    dataset = dataset or config.get("dataset")
    if not dataset:
        raise amb_config.ConfigError(f"{run}: no config.yaml naming its dataset; pass --dataset")
    model = trainer.load_model(runs.find_model_file(run))
    synthetic_params = {k: v for k, v in (config.get("synthetic") or {}).items() if k != "version"}
    source = sources.load_source(dataset, data_dir=data_dir or config.get("data_dir"),
                                 skip_bad_images=True, synthetic_params=synthetic_params,
                                 progress=not as_json)
    for _, reason in source.skipped:
        click.echo(f"skipped: {reason}", err=True)
    result = evaluation.evaluate(
        model, source, split=split, batch_size=batch_size,
        resize_ratio=trainer.run_resize_ratio(run_dir), method=method, limit=limit,
        thresholds=thresholds, rise_steps=rise_steps, progress=not as_json,
    )
    output = output or os.path.join(run_dir, "evaluation")
    os.makedirs(output, exist_ok=True)
    plot = evaluation.plot_curves(result, os.path.join(output, f"{split}-{method}-curves.png"),
                                  title=f"{os.path.basename(run_dir)} ({split}, {method})")
    runs.atomic_write_text(os.path.join(output, f"{split}-{method}.json"), json.dumps(result, indent=2))
    if as_json:
        click.echo(evaluation.summary_json(result))
        return
    click.echo(f"\n{os.path.basename(run_dir)} on {source.name} {split} ({result['examples']} images, map: {method})")
    rows = [
        ("top-1 (perception)", result["top1"]), ("top-5 (perception)", result["top5"]),
        ("top-1 (attention branch)", result["att_top1"]),
        ("Insertion / Deletion / Score (threshold sweep)",
         f"{result['insertion']:.3f} / {result['deletion']:.3f} / {result['score']:.3f}"),
        ("Insertion / Deletion / Score (RISE)",
         f"{result['rise_insertion']:.3f} / {result['rise_deletion']:.3f} / {result['rise_score']:.3f}"),
    ]
    for name in ("pointing_game", "energy_inside", "iou", "pointing_game_part",
                 "energy_inside_part", "iou_part"):
        if result.get(name) is not None:
            rows.append((name.replace("_", " "), result[name]))
    for name, value in rows:
        click.echo(f"  {name:48s} {value if isinstance(value, str) else f'{value:.4f}'}")
    p = result["params"]
    click.echo(f"  (thresholds: {p['thresholds']} in [0, 1], baseline {p['threshold_baseline']}; "
               f"RISE: {p['rise_steps']} steps, {p['rise_blur']})")
    click.echo(f"Curves: {plot}")
