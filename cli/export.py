"""`keras-amb export`."""

import os

import click

from keras_amb.cli.main import run_reporting_errors


@click.command()
@click.option("--model", "-m", "run", required=True, type=click.Path(exists=True),
              help="Run folder (or .keras file) to export.")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="TF Serving model folder; versions go in numbered subfolders. "
              "Default: saved_models/<run name>-serving.")
@click.option("--version", "version", type=int,
              help="Version number (default: the next free one; never overwrites).")
@click.option("--backend", type=click.Choice(["tensorflow", "jax", "torch"]),
              help="Ignored except for a notice: export always runs on TensorFlow.")
def export(run, output, version, backend):
    """Export a trained model as a TensorFlow SavedModel for TF Serving.

    \b
    Signatures:
      serving_default  image_bytes: encoded JPEG/PNG/BMP/GIF strings (REST: {"b64": ...})
      predict_images   images: uint8 (N, S, S, 3) already at the model's input size
    Outputs: probabilities, top_k_ids, top_k_scores, top_k_names, attention.
    \b
    Example:
      keras-amb export --model saved_models/synthetic-proposed-20260101-120000
      docker run -p 8501:8501 -v "$PWD/saved_models/<run>-serving:/models/amb" \\
          -e MODEL_NAME=amb tensorflow/serving
    """
    requested = backend or os.environ.get("KERAS_BACKEND")
    if requested and requested != "tensorflow":
        click.echo(f"Note: exporting on the TensorFlow backend (asked for {requested}); "
                   ".keras weights are backend-independent.", err=True)
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run_reporting_errors(_export, run, output, version)


def _export(run, output, version):
    import keras

    from keras_amb import export as amb_export
    from keras_amb import runs
    from keras_amb import trainer

    if keras.backend.backend() != "tensorflow":
        raise amb_export.ExportError(
            "Keras was already imported with another backend; run "
            "`KERAS_BACKEND=tensorflow keras-amb export ...`"
        )
    model_path = runs.find_model_file(run)
    run_dir = runs.run_dir_of(run)
    model = trainer.load_model(model_path)
    names = runs.read_labels(run_dir) or [f"class_{i}" for i in range(model.num_classes)]
    resize_ratio = trainer.run_resize_ratio(run_dir)
    if output is None:
        name = os.path.basename(os.path.normpath(run_dir)) or "model"
        output = os.path.join(runs.DEFAULT_ROOT, f"{name}-serving")
    target = amb_export.export_saved_model(model, names, output, version, resize_ratio)
    click.echo(f"Exported {model_path} to {target}")
    click.echo("  signatures: serving_default (image_bytes), predict_images (images)")
    click.echo(f"  serve: docker run -p 8501:8501 -v \"{os.path.abspath(output)}:/models/amb\" "
               "-e MODEL_NAME=amb tensorflow/serving")
