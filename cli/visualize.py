"""`keras-amb visualize`."""

import os

import click

from keras_amb.cli.main import BACKENDS
from keras_amb.cli.main import UserError
from keras_amb.cli.main import _set_backend
from keras_amb.cli.main import run_reporting_errors


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--model", "-m", "run", type=click.Path(exists=True),
              help="Run folder or .keras file. Default: the newest run under saved_models/.")
@click.option("--compare", multiple=True, type=click.Path(exists=True),
              help="More runs to show side by side (repeat: --compare RUN2 --compare RUN3).")
@click.option("--method", type=click.Choice(["attention", "cam", "gradcam", "all"]),
              default="attention", show_default=True,
              help="The model's attention map, or CAM / Grad-CAM of the perception branch.")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Where the PNGs go. Default: <run>/visualize/.")
@click.option("--save-maps", is_flag=True,
              help="Also write the raw maps (.npy) and an editable grey PNG per image "
              "(maps/<stem>.png), usable as --attention-targets after editing.")
@click.option("--backend", type=click.Choice(BACKENDS), help="Keras backend.")
def visualize(inputs, run, compare, method, output, save_maps, backend):
    """Draw attention maps over images, with the top-5 classes (paper, Fig. 3).

    INPUTS are image files or folders of images (JPEG, PNG, BMP, GIF, WebP).

    \b
    Examples:
      keras-amb visualize bird.jpg
      keras-amb visualize photos/ --model saved_models/cub-proposed-... --method all
      keras-amb visualize bird.jpg --model ABN_RUN --compare AMB_RUN
    """
    _set_backend(backend)
    failed = run_reporting_errors(_visualize, inputs, run, compare, method, output, save_maps)
    if failed:
        raise UserError(f"{len(failed)} of the images could not be read (listed above)")


def _visualize(inputs, run, compare, method, output, save_maps):
    from keras_amb import runs
    from keras_amb.explain import maps as explain_maps
    from keras_amb.explain.visualize import load_run
    from keras_amb.explain.visualize import visualize as run_visualize

    if run is None:
        run = runs.newest_run()
        if run is None:
            raise runs.RunError(
                "No trained model under saved_models/. Train one first "
                "(keras-amb train --dataset synthetic) or pass --model RUN."
            )
        click.echo(f"Using the newest run: {run}")
    methods = list(explain_maps.METHODS) if method == "all" else [method]
    loaded = [load_run(r) for r in (run, *compare)]
    output = output or os.path.join(runs.run_dir_of(run), "visualize")
    written, failed = run_visualize(
        inputs, loaded, methods, output, save_maps,
        report=click.echo, error=lambda m: click.echo(m, err=True),
    )
    click.echo(f"Wrote {len(written)} figure(s) to {output}")
    return failed
