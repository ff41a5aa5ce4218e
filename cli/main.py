"""`keras-amb`: train, look at, measure and export self-explaining classifiers.

The CLI only parses, prints and reports errors; the behaviour lives in the
`keras_amb` library. Keras is imported only after `--backend` is applied.
"""

import os
import sys

import click

BACKENDS = ("tensorflow", "jax", "torch")


def _import_tensorflow_quietly():
    """Imports TensorFlow and finds its devices with native stderr silenced.

    TensorFlow 2.20+ prints its start-up notices (oneDNN, CPU features) from
    C++ before its log level is read, whatever TF_CPP_MIN_LOG_LEVEL says, and
    looking for a GPU without a CUDA driver logs a `cuInit` error; all of it
    happens here, once. KERAS_AMB_DEBUG=1 shows them.
    """
    if "tensorflow" in sys.modules or os.environ.get("KERAS_AMB_DEBUG") == "1":
        return
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def set_backend(backend):
    """Chooses the Keras backend; must run before Keras is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != backend:
            raise click.UsageError(
                f"--backend {backend}: Keras was already imported with another backend"
            )
        os.environ["KERAS_BACKEND"] = backend
    _import_tensorflow_quietly()


class UserError(click.ClickException):
    """An error shown as one clear line, without a traceback."""


def _user_errors():
    """The errors the library raises on purpose for users to fix. Anything
    else is a bug and keeps its traceback."""
    from keras_amb.config import ConfigError
    from keras_amb.data.errors import DatasetError
    from keras_amb.data.errors import DatasetUnavailableError
    from keras_amb.data.image_io import ImageReadError
    from keras_amb.distribution import DistributionError
    from keras_amb.export import ExportError
    from keras_amb.files import FileWriteError
    from keras_amb.models.attention_branch_network import NonFiniteLossError
    from keras_amb.models.backbones import WeightsUnavailableError
    from keras_amb.runs import RunError
    from keras_amb.safety import OutputError

    return (
        ConfigError, DatasetError, ImageReadError, DatasetUnavailableError,
        DistributionError, ExportError, NonFiniteLossError, WeightsUnavailableError,
        RunError, FileWriteError, OutputError, PermissionError,
    )


def run_reporting_errors(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except click.ClickException:
        raise
    except KeyboardInterrupt:
        raise click.Abort() from None
    except _user_errors() as error:
        if os.environ.get("KERAS_AMB_DEBUG") == "1":
            raise
        if isinstance(error, PermissionError):
            raise UserError(f"{error.filename or error}: permission denied") from None
        raise UserError(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="keras-amb")
def cli():
    """Train image classifiers whose attention maps explain their decisions.

    \b
    Quick start (built-in synthetic dataset, a few minutes on a 2-core CPU):
      keras-amb train --dataset synthetic
      keras-amb visualize some_image.png
      keras-amb predict photos/ --model saved_models/<run> --format csv
    \b
    The model is an Attention Branch Network improved by an Attention Mining
    Branch, Prototype Conformity loss and Complement Objective Training.
    Runs land in saved_models/<dataset>-<architecture>-<timestamp>/; every
    command that reads a model takes such a folder or a bare .keras file.
    """


def _register():
    from keras_amb.cli.ablate import ablate
    from keras_amb.cli.evaluate import evaluate
    from keras_amb.cli.export import export
    from keras_amb.cli.info import info
    from keras_amb.cli.predict import predict
    from keras_amb.cli.train import train
    from keras_amb.cli.visualize import visualize

    for command in (train, visualize, predict, evaluate, info, export, ablate):
        cli.add_command(command)


_register()


def main():
    cli(prog_name="keras-amb")


if __name__ == "__main__":
    main()
