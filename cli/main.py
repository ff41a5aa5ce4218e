"""`keras-amb`: train, look at, measure and export self-explaining classifiers.

The CLI only parses, prints and reports errors; the behaviour lives in the
`keras_amb` library. Keras is imported only after `--backend` is applied.
"""

import os
import sys

import click

BACKENDS = ("tensorflow", "jax", "torch")


def _set_backend(backend):
    """Chooses the Keras backend; must run before Keras is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != backend:
            raise click.UsageError(
                f"--backend {backend}: Keras was already imported with another backend"
            )
        os.environ["KERAS_BACKEND"] = backend


class UserError(click.ClickException):
    """An error shown as one clear line, without a traceback."""


def _user_errors():
    """The library's errors that are the user's to fix, shown without traceback."""
    from keras_amb.config import ConfigError
    from keras_amb.data.folder import BadImagesError
    from keras_amb.data.image_io import ImageReadError
    from keras_amb.data.sources import DatasetUnavailableError
    from keras_amb.models.attention_branch_network import NonFiniteLossError
    from keras_amb.models.backbones import WeightsUnavailableError
    from keras_amb.runs import RunError

    return (
        ConfigError, BadImagesError, ImageReadError, DatasetUnavailableError,
        NonFiniteLossError, WeightsUnavailableError, RunError, FileNotFoundError,
        ValueError,
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
        raise UserError(f"{error} (KERAS_AMB_DEBUG=1 shows the traceback)"
                        if isinstance(error, ValueError) and type(error) is ValueError
                        else str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="keras-amb")
def cli():
    """Train image classifiers whose attention maps explain their decisions.

    \b
    Quick start (built-in synthetic dataset, about 8 minutes on a 2-core CPU):
      keras-amb train --dataset synthetic
      keras-amb visualize some_image.png
    \b
    The model is an Attention Branch Network improved by an Attention Mining
    Branch, Prototype Conformity loss and Complement Objective Training.
    Runs land in saved_models/<dataset>-<model>-<timestamp>/.
    """


from keras_amb.cli import train as _train  # noqa: E402

cli.add_command(_train.train)

for _name in ("visualize", "evaluate", "export", "ablate"):
    try:
        _module = __import__(f"keras_amb.cli.{_name}", fromlist=[_name])
    except ImportError:
        continue
    cli.add_command(getattr(_module, _name))


def main():
    cli(prog_name="keras-amb")


if __name__ == "__main__":
    main()
