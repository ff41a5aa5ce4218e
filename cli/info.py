"""`keras-amb info`."""

import click

from keras_amb.cli.main import BACKENDS
from keras_amb.cli.main import run_reporting_errors
from keras_amb.cli.main import set_backend


@click.command()
@click.argument("run", type=click.Path(exists=True))
@click.option("--backend", type=click.Choice(BACKENDS), help="Keras backend.")
def info(run, backend):
    """Show what a run folder or .keras file holds.

    The architecture and its switches, backbone, classes, input size and
    preprocessing, the main training settings, the last epoch's metrics and
    the run's files.

    \b
    Example:
      keras-amb info saved_models/synthetic-proposed-20260101-120000
    """
    set_backend(backend)
    run_reporting_errors(_info, run)


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _info(run):
    from keras_amb.runs import Run
    from keras_amb.trainer import describe

    opened = Run.open(run)
    model = opened.load_model()
    names = model.get_class_names()
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    click.echo(f"{opened.name}")
    click.echo(f"  model file      {opened.model_path}")
    click.echo(f"  architecture    {type(model).__name__}: {describe(model)}")
    if model.amb:
        click.echo(f"  mask T(A)       {'hard' if model.hard_mask else 'soft'}, threshold "
                   f"{model.mask_threshold}, slope {model.mask_slope}")
    click.echo(f"  backbone        {model.backbone}")
    click.echo(f"  classes         {model.num_classes}: {shown}"
               + ("" if model.class_names else "  (no names saved)"))
    click.echo(f"  input           {model.image_size}x{model.image_size} RGB in [0, 255], "
               f"shorter side resized to {model.image_size * model.resize_ratio:.0f} px "
               f"(ratio {model.resize_ratio:.4g}) then centre-cropped")
    click.echo(f"  parameters      {model.count_params():,}")
    config = opened.config()
    if config:
        optimizer = config.get("optimizer", {})
        click.echo(f"  dataset         {config.get('dataset')}")
        click.echo(f"  training        {config.get('architecture')}: "
                   f"{config.get('pretrain_epochs')} ABN + {config.get('epochs')} epochs, "
                   f"batch {config.get('batch_size')}, {optimizer.get('name')} lr "
                   f"{optimizer.get('learning_rate')} (weight decay "
                   f"{optimizer.get('weight_decay')}), {config.get('lr_schedule', {}).get('name')} "
                   f"schedule, seed {config.get('seed')}, backend {config.get('backend') or 'default'}")
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
    if opened.run_dir:
        click.echo("  files")
        for name, size in opened.files():
            click.echo(f"    {name:32s} {_size(size)}")
