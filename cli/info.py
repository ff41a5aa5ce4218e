"""`keras-amb info`."""

import json
import os
import shutil

import click

from keras_amb.cli.common import model_given
from keras_amb.cli.common import run_reporting_errors

# Up to this many classes are listed in full; more are cut, and `--classes`
# lists them all.
CLASSES_SHOWN = 40
INDENT = " " * 18


@click.command()
@click.argument("positional", required=False, metavar="[RUN]")
@click.option("--model", "-m", "run", help="The run folder or .keras file (or give it as RUN).")
@click.option("--classes", "classes_only", is_flag=True,
              help="Print only the class names, one per line (the names `--class` takes).")
def info(positional, run, classes_only):
    """Show what a run folder or .keras file holds.

    The architecture and its switches, backbone, classes, input size and
    preprocessing, the main training settings, the last epoch's metrics, the
    test metrics and the run's files. Reads the files only: neither Keras nor
    TensorFlow is imported, so it answers at once.

    \b
    Examples:
      keras-amb info --model saved_models/synthetic-mining-20260101-120000
      keras-amb info -m saved_models/synthetic-mining-20260101-120000 --classes
    """
    run = model_given(positional, run, "info")
    run_reporting_errors(_info, run, classes_only)


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _wrapped(label, text, separator=" "):
    """`  label           text`, wrapped under itself at `separator`s only
    (", " keeps each class name, spaces and all, on one line)."""
    width = max(60, min(shutil.get_terminal_size().columns, 100)) - len(INDENT)
    lines, line = [], ""
    for word in text.split(separator):
        candidate = f"{line}{separator}{word}" if line else word
        if line and len(candidate) > width:
            lines.append(line + separator.rstrip())
            line = word
        else:
            line = candidate
    lines.append(line)
    return f"  {label:16s}" + "\n".join(
        (INDENT if i else "") + line for i, line in enumerate(lines))


def _info(run, classes_only):
    from keras_amb.names import for_terminal
    from keras_amb.model_file import describe
    from keras_amb.model_file import read_model_file
    from keras_amb.app.runs import Run

    opened = Run.open(run)
    model = read_model_file(opened.model_path, count_parameters=not classes_only)
    config = model.config
    names, saved = config["class_names"], config["class_names"] is not None
    if names is None:
        labels = opened.labels()
        names = labels if labels is not None and len(labels) == config["num_classes"] else None
    if names is not None:  # names are data: one line each, no terminal escapes
        names = [for_terminal(name) for name in names]
    if classes_only:
        for name in names or [f"class_{i}" for i in range(config["num_classes"])]:
            click.echo(name)
        return
    run_config = opened.config()
    resize_ratio = config["resize_ratio"]
    if not saved and run_config.get("resize_ratio"):
        resize_ratio = float(run_config["resize_ratio"])
    click.echo(for_terminal(opened.name))
    if opened.source != opened.model_path and opened.run_dir is None:
        click.echo(f"  preset          {for_terminal(opened.source)}")
    else:
        click.echo(f"  model file      {for_terminal(opened.model_path)}")
    if model.keras_version or model.date_saved:
        click.echo(f"  saved           {model.date_saved or '?'} by Keras {model.keras_version or '?'}")
    click.echo(f"  architecture    {model.class_name}: {describe(config)}")
    if config["amb"]:
        click.echo(f"  mask T(A)       {'hard' if config['hard_mask'] else 'soft'}, threshold "
                   f"{config['mask_threshold']}, slope {config['mask_slope']}")
    click.echo(f"  backbone        {config.get('backbone')}")
    if names is None:
        click.echo(f"  classes         {config['num_classes']} (no names saved)")
    else:
        shown = names if len(names) <= CLASSES_SHOWN else names[:CLASSES_SHOWN // 2]
        text = f"{len(names)}: {', '.join(shown)}"
        if len(shown) < len(names):
            text += (f", ... and {len(names) - len(shown)} more (`keras-amb info {run} "
                     "--classes` lists them all)")
        click.echo(_wrapped("classes", text, separator=", "))
    size = config.get("image_size")
    click.echo(f"  input           {size}x{size} RGB in [0, 255], "
               f"shorter side resized to {size * resize_ratio:.0f} px "
               f"(ratio {resize_ratio:.4g}) then center-cropped")
    if model.parameters is not None:
        click.echo(f"  parameters      {model.parameters:,}")
    if run_config:
        optimizer = run_config.get("optimizer", {})
        click.echo(f"  dataset         {for_terminal(run_config.get('dataset'))}")
        click.echo(_wrapped(
            "training",
            f"{run_config.get('architecture')}: "
            f"{run_config.get('pretrain_epochs')} ABN + {run_config.get('epochs')} epochs, "
            f"batch {run_config.get('batch_size')}, {optimizer.get('name')} lr "
            f"{optimizer.get('learning_rate')} (weight decay "
            f"{optimizer.get('weight_decay')}), "
            f"{run_config.get('lr_schedule', {}).get('name')} schedule, seed "
            f"{run_config.get('seed')}, backend {_backend(run_config, opened.state())}"))
    state = opened.state()
    if state:
        status = "finished" if state.get("finished") else (
            f"stage {state.get('stage')!r}, {state.get('completed_epochs')} epoch(s) done")
        click.echo(f"  state           {status}")
    history = opened.history()
    if history:
        last = history[-1]
        shown = [f"{k} {float(last[k]):.4f}" for k in ("loss", "top1", "val_loss", "val_top1",
                                                       "val_att_top1") if last.get(k)]
        click.echo(f"  last epoch      {last['stage']} {last['epoch']}: {', '.join(shown)}")
    if (opened.run_dir and os.path.basename(opened.model_path) == "model.keras"
            and os.path.isfile(opened.path("test_metrics.json"))):
        with open(opened.path("test_metrics.json"), encoding="utf-8") as f:
            test = json.load(f)
        shown = [f"{k} {float(test[k]):.4f}" for k in ("top1", "top5", "att_top1", "loss")
                 if test.get(k) is not None]
        click.echo(_wrapped("test", ", ".join(shown) + " (test_metrics.json)"))
    if opened.run_dir:
        click.echo("  files")
        for name, size in opened.files():
            click.echo(f"    {name:32s} {_size(size)}")


def _backend(run_config, state):
    """The backend that trained the run: recorded in state.json since 0.3;
    for earlier runs, the one config.yaml asked for, if any."""
    recorded = (state or {}).get("backend")
    if recorded:
        return recorded
    asked = run_config.get("backend")
    return asked if asked else "not recorded (KERAS_BACKEND's at the time, else tensorflow)"
