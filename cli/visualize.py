"""`keras-amb visualize`."""

import os

import click

from keras_amb.cli.common import BACKENDS
from keras_amb.cli.common import UserError
from keras_amb.cli.common import image_paths
from keras_amb.cli.common import run_reporting_errors
from keras_amb.cli.common import set_backend


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--model", "-m", "run", type=click.Path(exists=True),
              help="Run folder or .keras file. Default: the newest run under saved_models/.")
@click.option("--compare", multiple=True, type=click.Path(exists=True),
              help="More runs or model files to show as extra rows "
              "(repeat: --compare RUN2 --compare RUN3).")
@click.option("--method", type=click.Choice(["attention", "cam", "gradcam", "all"]),
              default="attention", show_default=True,
              help="The model's attention map, CAM or Grad-CAM of the perception branch, "
              "or all three.")
@click.option("--class", "class_name",
              help="Explain this class (a name from the model's classes) instead of the "
              "predicted one (CAM and Grad-CAM; the attention map is class-agnostic).")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Opacity of the map over the image.")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Where the PNGs go. Default: <run>/visualize/.")
@click.option("--save-maps", is_flag=True,
              help="Also write each model's raw maps (maps/<key>.<model>.<method>.npy) and "
              "an editable grey PNG of the first map per image (maps/<key>.png; the key is the "
              "image's path relative to the folder given), usable as "
              "--attention-targets after editing.")
@click.option("--backend", type=click.Choice(BACKENDS), help="Keras backend.")
def visualize(inputs, run, compare, method, class_name, alpha, output, save_maps, backend):
    """Draw attention maps over images, with the top-5 classes (paper, Fig. 3).

    INPUTS are image files or folders of images (JPEG, PNG, BMP, GIF, WebP).
    Each figure has a row per model, labelled with its run (and file) and
    architecture, and a colour bar: the attention map is drawn at its raw
    values in [0, 1], CAM and Grad-CAM normalised to [0, 1].

    \b
    Examples:
      keras-amb visualize bird.jpg
      keras-amb visualize photos/ --model saved_models/cub-mining-... --method all
      keras-amb visualize bird.jpg --model ABN_RUN --compare AMB_RUN
      keras-amb visualize bird.jpg --method cam --class cardinal --alpha 0.6
    """
    # Nothing to draw is a usage error, said before TensorFlow loads; folders
    # stay folders (map keys).
    image_paths(inputs)
    set_backend(backend, models=[run, *compare])
    failed = run_reporting_errors(_visualize, inputs, run, compare, method, class_name, alpha,
                                  output, save_maps)
    if failed:
        raise UserError(f"{len(failed)} of the images could not be read (listed above)")


def _visualize(inputs, run, compare, method, class_name, alpha, output, save_maps):
    from keras_amb.app import runs
    from keras_amb.explain import maps as explain_maps
    from keras_amb.explain import visualize as explain_visualize
    from keras_amb.names import for_terminal

    if run is None:
        run = runs.newest_run()
        if run is None:
            raise runs.RunError(
                "No trained model under saved_models/. Train one first "
                "(keras-amb train --dataset synthetic) or pass --model RUN."
            )
        click.echo(f"Using the newest run: {run}")
    methods = list(explain_maps.METHODS) if method == "all" else [method]
    opened = runs.Run.open(run)
    if output is None:
        output = opened.output_folder("visualize")
    _check_output(inputs, output, save_maps)
    models = _load_models((run, *compare))
    try:
        written, failed = explain_visualize.visualize(
            inputs, models, methods, output, save_maps, class_name=class_name, alpha=alpha,
            report=lambda m: click.echo(for_terminal(m)),
            error=lambda m: click.echo(for_terminal(m), err=True),
        )
    except explain_visualize.UnknownClassError as error:
        raise click.BadParameter(str(error), param_hint="--class") from None
    click.echo(f"Wrote {len(written)} figure(s) to {for_terminal(output)}")
    return failed


def _check_output(inputs, output, save_maps):
    """Before any work: --output can be written and holds no input image
    that a figure or map could overwrite."""
    from keras_amb.app import safety
    from keras_amb.inference import expand_inputs

    paths = expand_inputs(inputs, exclude=[output])
    folders = [output, os.path.join(output, "maps")] if save_maps else [output]
    safety.check_not_an_input(output, "--output", paths, folders=folders)
    safety.check_output_folder(output, "--output")


def _load_models(paths):
    """`LoadedModel`s for run folders or model files; labels are the run and
    file (`run/abn.keras`) with the architecture, made unique."""
    from keras_amb.explain.visualize import LoadedModel
    from keras_amb.explain.visualize import unique_label
    from keras_amb.app.runs import Run

    loaded, used = [], set()
    for path in paths:
        run = Run.open(path)
        model = run.load_model()
        label = unique_label(f"{run.name} ({model.description})", used, " #")
        loaded.append(LoadedModel(label=label, model=model))
    return loaded
