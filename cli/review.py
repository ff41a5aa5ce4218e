"""`keras-amb review`."""

import importlib.util
import os
import secrets
import socket

import click

from keras_amb.cli.common import BACKENDS
from keras_amb.cli.common import UserError
from keras_amb.cli.common import model_given
from keras_amb.cli.common import run_reporting_errors
from keras_amb.cli.common import set_backend

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.argument("positional", required=False, metavar="[RUN]")
@click.option("--model", "-m", "run", help="The run folder or .keras file (or give it as RUN).")
@click.option("--dataset", "-d",
              help="Review this dataset ('synthetic', a TFDS name, or a folder of class "
              "subfolders). Default: the run's own.")
@click.option("--data-dir", type=click.Path(), help="Where TFDS keeps its datasets.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train",
              show_default=True,
              help="The split to review. Corrections train only on the train split.")
@click.option("--images", type=click.Path(exists=True, file_okay=False),
              help="Review any folder of images instead (no labels, so no fine-tuning).")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Where corrected maps (maps/) and fine-tuning runs go; the server writes "
              "nothing elsewhere. Default: RUN/review.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than this machine's own needs --token "
              "(one is generated if not given).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port (0: any free one).")
@click.option("--token", envvar="KERAS_AMB_REVIEW_TOKEN", show_envvar=True,
              help="Secret every request must carry. Given here it shows in `ps`; prefer "
              "the environment variable or --token-file.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False),
              help="Read the token from this file (its first line).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--backend", type=click.Choice(BACKENDS), help="Keras backend.")
def review(positional, run, dataset, data_dir, split, images, output, host, port, token, token_file,
           batch_size, backend):
    """Look at a model's attention maps in the browser, correct them, fine-tune.

    Serves a page with a gallery of the images (misclassified first, then the
    least confident), an editor to paint each image's corrected attention map,
    and the command (or a button) that fine-tunes on the corrections. Needs
    the review extra: pip install "keras-amb[review]".

    \b
    Examples:
      keras-amb review --model saved_models/RUN         # the run's dataset, train split
      keras-amb review RUN --dataset ./my_images --split val
      keras-amb review RUN --images photos/             # any folder, no labels
      keras-amb review RUN --host 0.0.0.0 --port 8765   # prints a URL with a token
    """
    run = model_given(positional, run, "review")
    if importlib.util.find_spec("flask") is None:
        raise UserError('keras-amb review needs Flask: pip install "keras-amb[review]"')
    if images and dataset:
        raise click.UsageError("give --dataset or --images, not both")
    if token_file:
        if token:
            raise click.UsageError("give --token or --token-file, not both")
        with open(token_file, encoding="utf-8", errors="replace") as f:
            token = f.readline(4096).strip()
        if not token:
            raise click.UsageError(f"--token-file {token_file}: empty")
    if host not in LOCAL_HOSTS and not token:
        token = secrets.token_urlsafe(24)
    set_backend(backend)
    run_reporting_errors(_review, run, dataset, data_dir, split, images, output, host, port,
                         token, batch_size)


def _review(run, dataset, data_dir, split, images, output, host, port, token, batch_size):
    from keras_amb.app.review.server import create_app
    from keras_amb.app.review.server import serve
    from keras_amb.app.review.session import Review
    from keras_amb.app.review.images import image_set
    from keras_amb.app.runs import Run

    opened = Run.open(run)
    if output is None:
        base = opened.run_dir or os.path.splitext(run)[0]
        output = os.path.join(base, "review")
    image_set_ = image_set(opened, dataset, data_dir, split, images)
    click.echo(f"Loading {opened.name}; {len(image_set_)} images: {image_set_.name}")
    session = Review(run, image_set_, output, batch_size=batch_size)
    session.start_scoring()
    app = create_app(session, token)
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host

    def ready(bound):
        url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
        click.echo(f"Reviewing {opened.name} at {url} (Ctrl+C to stop)")
        if session.read_only:
            click.echo(f"Saving is off: {session.read_only}; give --output a folder you can "
                       "write")
        else:
            click.echo(f"Corrected maps go to {session.maps_dir}")

    try:
        serve(app, host, port, ready)
    except OSError as error:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({error.strerror})")
    finally:
        session.stop()
