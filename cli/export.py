"""`keras-amb export`."""

import os

import click

from keras_amb.cli.common import run_reporting_errors
from keras_amb.cli.common import set_backend


@click.command()
@click.option("--model", "-m", "run", required=True, type=click.Path(exists=True),
              help="Run folder (or .keras file) to export.")
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "onnx", "preset"]),
              default="savedmodel", show_default=True,
              help="savedmodel: a TF Serving model folder; onnx: one .onnx file (needs "
              "`pip install keras-amb[onnx]`); preset: a folder to share the trained model "
              "(keras-hub's layout; every command and keras_amb.load_model take it).")
@click.option("--output", "-o", type=click.Path(),
              help="savedmodel: the TF Serving model folder (versions go in numbered "
              "subfolders), default <run>-serving beside the run folder (or model file); "
              "onnx: the file, default <run>.onnx beside it.")
@click.option("--serving-version", "version", type=click.IntRange(min=1),
              help="SavedModel version number (default: the next free one; never overwrites).")
@click.option("--max-pixels", type=click.IntRange(min=1),
              help="savedmodel: refuse a request image of more pixels (all frames of a GIF "
              "together), read from its header before decoding. Default: "
              "KERAS_AMB_MAX_PIXELS, else 50000000.")
@click.option("--max-aspect-ratio", type=click.FloatRange(min=1),
              help="savedmodel: refuse a request image whose longer side is more than this "
              "many times its shorter one. Default: KERAS_AMB_MAX_ASPECT_RATIO, else 20.")
def export(run, fmt, output, version, max_pixels, max_aspect_ratio):
    """Export a trained model: TensorFlow SavedModel or ONNX for serving, or a
    preset folder to share it.

    SavedModel and ONNX exports run on TensorFlow whatever backend trained the
    model (.keras weights are backend-independent); a preset (keras-hub's
    layout: config.json, model.weights.h5, metadata.json, README.md) is written
    on any backend, and every command and keras_amb.load_model take it.

    \b
    SavedModel signatures:
      serving_default  image_bytes: encoded JPEG/PNG/BMP/GIF/WebP strings (REST: {"b64": ...});
                     an image over --max-pixels or --max-aspect-ratio fails its request
      predict_images   images: uint8 (N, S, S, 3) already at the model's input size
    Outputs: probabilities, top_k_ids, top_k_scores, top_k_names, attention.
    ONNX: input `images` float32 (N, S, S, 3) RGB in [0, 255]; outputs
    `probabilities` (N, K) and `attention` (N, h, w).
    \b
    Examples:
      keras-amb export --model saved_models/synthetic-mining-20260101-120000
      docker run -p 8501:8501 -v "$PWD/saved_models/<run>-serving:/models/amb" \\
          -e MODEL_NAME=amb tensorflow/serving
      keras-amb export --model saved_models/<run> --format onnx
      keras-amb export --model saved_models/<run> --format preset --output birds-amb
    """
    # A preset is Keras's own files, written on any backend; the rest need
    # TensorFlow.
    set_backend(None if fmt == "preset" else "tensorflow", models=[run])
    run_reporting_errors(_export, run, fmt, output, version, max_pixels, max_aspect_ratio)


def default_output(opened, fmt):
    """Where an export goes without --output: beside the run folder (or the
    bare model file), `<run>-serving` or `<run>.onnx`."""
    stem = opened.name.replace("/", "-").replace(".keras", "")
    beside = os.path.dirname(os.path.normpath(opened.source))
    suffix = {"onnx": ".onnx", "preset": "-preset"}.get(fmt, "-serving")
    return os.path.join(beside, f"{stem}{suffix}")


def _export(run, fmt, output, version, max_pixels=None, max_aspect_ratio=None):
    import keras

    from keras_amb.app import export as amb_export
    from keras_amb.app import runs
    from keras_amb.app import safety

    if keras.backend.backend() != "tensorflow" and fmt != "preset":
        raise amb_export.ExportError(
            "Keras was already imported with another backend; run "
            "`KERAS_BACKEND=tensorflow keras-amb export ...`"
        )
    opened = runs.Run.open(run)
    # Before any work: an output that can be written and is not the model.
    output = output or default_output(opened, fmt)
    if fmt != "savedmodel" and version is not None:
        raise click.UsageError("--serving-version is for --format savedmodel")
    if fmt == "onnx":
        safety.check_not_an_input(output, "--output", model_path=opened.protected_files())
        safety.check_output_file(output, "--output")
    elif fmt == "preset":
        if os.path.lexists(output):
            raise safety.OutputError(f"--output {output}: already exists; a preset is written "
                                     "to a new folder")
        safety.check_output_folder(output, "--output", create=False)
    else:
        if os.path.exists(output) and not os.path.isdir(output):
            raise safety.OutputError(
                f"--output {output}: is a file; a SavedModel export is a folder (TF "
                "Serving's model folder, versions in numbered subfolders)")
        safety.check_output_folder(output, "--output", create=False)
    model = opened.load_model()
    if fmt == "preset":
        from keras_amb.presets import save_preset

        save_preset(model, output)
        click.echo(f"Exported {opened.source} to the preset {output}")
        click.echo(f"  load: keras_amb.load_model({output!r}), or --model {output} in any "
                   "command; share: keras_amb.upload_preset('hf://USER/NAME', ...)")
        return
    if fmt == "onnx":
        path = amb_export.export_onnx(model, output)
        click.echo(f"Exported {opened.source} to {path}")
        click.echo("  input: images float32 (N, S, S, 3) in [0, 255]; outputs: probabilities, "
                   "attention")
        return
    target = amb_export.export_saved_model(model, output, version, max_pixels, max_aspect_ratio)
    click.echo(f"Exported {opened.source} to {target}")
    click.echo("  signatures: serving_default (image_bytes), predict_images (images)")
    click.echo(f"  serve: docker run -p 8501:8501 -v \"{os.path.abspath(output)}:/models/amb\" "
               "-e MODEL_NAME=amb tensorflow/serving")
