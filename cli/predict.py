"""`keras-amb predict`."""

import csv
import json
import os
import sys

import click

from keras_amb.cli.common import BACKENDS
from keras_amb.cli.common import UserError
from keras_amb.cli.common import image_paths
from keras_amb.cli.common import run_reporting_errors
from keras_amb.cli.common import set_backend


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--model", "-m", "run", required=True, type=click.Path(exists=True),
              help="Run folder or .keras file.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Classes per image.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json",
              show_default=True, help="json: one JSON object per line; csv: one row per image.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write the records to this file instead of standard output.")
@click.option("--save-maps", type=click.Path(file_okay=False),
              help="Also save each image's attention map, keyed by its path relative to the "
              "folder given (a file: its name): <key>.png (grey, over the whole image; "
              "what train --attention-targets reads) and <key>.npy (raw, over the model's "
              "center crop), with index.json; the records name both (map, map_raw).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--backend", type=click.Choice(BACKENDS), help="Keras backend.")
def predict(inputs, run, top_k, fmt, output, save_maps, batch_size, backend):
    """Predict classes and attention for image files and folders.

    Writes one record per image: its path, the top-k class names and
    probabilities, and the attention map's peak (x, y as fractions of the
    center crop the model saw, from the top left). An unreadable file gets a
    record with its error, the others are still predicted, and the exit code
    is 1. Progress goes to standard error.

    \b
    Examples:
      keras-amb predict photos/ --model saved_models/dogs-mining-... > predictions.jsonl
      keras-amb predict a.jpg b.png --model model.keras --format csv --top-k 3
      keras-amb predict photos/ --model RUN --output preds.csv --format csv --save-maps maps/
    """
    # Listed before TensorFlow loads: nothing to predict is said at once.
    paths = image_paths(inputs, exclude=[save_maps])
    set_backend(backend, models=[run])
    errors = run_reporting_errors(_predict, inputs, paths, run, top_k, fmt, output, save_maps,
                                  batch_size)
    if errors:
        raise UserError(f"{errors} file(s) could not be read (see their records)")


def _csv_header(top_k, maps=False):
    header = ["path"]
    for i in range(1, top_k + 1):
        header += [f"class_{i}", f"score_{i}"]
    return header + ["attention_peak_x", "attention_peak_y"] + (
        ["map", "map_raw"] if maps else []) + ["error"]


def _csv_row(record, top_k):
    """A CSV row; names are data (`names.for_text`: a file name that is not
    UTF-8 is written with its bytes escaped, `\\xe9`)."""
    from keras_amb.names import for_text

    row = {"path": for_text(record["path"]), "error": for_text(record.get("error", ""))}
    for key in ("map", "map_raw"):
        if key in record:
            row[key] = for_text(record[key])
    for i, entry in enumerate(record.get("top_k", []), start=1):
        row[f"class_{i}"], row[f"score_{i}"] = for_text(entry["class"]), entry["score"]
    if "attention_peak" in record:
        row["attention_peak_x"] = record["attention_peak"]["x"]
        row["attention_peak_y"] = record["attention_peak"]["y"]
    return row


def _predict(inputs, paths, run, top_k, fmt, output, save_maps, batch_size):
    from keras_amb.app import safety
    from keras_amb.data import map_store
    from keras_amb.explain.visualize import save_map
    from keras_amb.files import AtomicFile
    from keras_amb.inference import predict_files
    from keras_amb.names import for_terminal
    from keras_amb.app.runs import Run

    opened = Run.open(run)
    # Before any work: outputs that can be written and destroy no input.
    if output:
        safety.check_not_an_input(output, "--output", paths, opened.protected_files())
        safety.check_output_file(output, "--output")
    store = None
    if save_maps:
        safety.check_not_an_input(save_maps, "--save-maps", paths, folders=[save_maps])
        safety.check_output_folder(save_maps, "--save-maps")
        keys = dict(map_store.input_keys(inputs))
        store = map_store.MapStore(save_maps)
    model = opened.load_model()
    top_k = min(top_k, model.num_classes)
    stream = AtomicFile(output, newline="", encoding="utf-8") if output else sys.stdout
    show_progress = len(paths) > batch_size

    def progress(done, total):
        if show_progress:
            click.echo(f"\rpredicted {done}/{total} images", err=True, nl=done == total)

    errors = 0
    try:
        writer = None
        if fmt == "csv":
            writer = csv.DictWriter(stream, fieldnames=_csv_header(top_k, bool(save_maps)))
            writer.writeheader()
        for prediction in predict_files(model, paths, top_k, batch_size, progress):
            record = prediction.record()
            if prediction.error is not None:
                errors += 1
                click.echo(f"error: {for_terminal(prediction.error)}", err=True)
            elif store is not None:
                record["map"] = save_map(
                    store, keys[prediction.path], prediction.attention,
                    prediction.original_shape, model.resize_ratio, "attention",
                    os.path.abspath(run))
                record["map_raw"] = os.path.splitext(record["map"])[0] + ".npy"
            if writer is not None:
                writer.writerow(_csv_row(record, top_k))
            else:
                stream.write(json.dumps(record) + "\n")
            stream.flush()
    except BaseException:
        if output:
            stream.discard()  # the old file, if any, stays as it was
        raise
    finally:
        if output:
            stream.close()
        if store is not None:
            store.save_index()
    if output:
        click.echo(f"Wrote {len(paths)} record(s) to {for_terminal(output)}", err=True)
    return errors
