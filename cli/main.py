"""`keras-amb`: train, look at, measure and export self-explaining classifiers.

The CLI only parses, prints and reports errors; the behaviour lives in the
`keras_amb` library. Keras is imported only after `--backend` is applied.
"""

import click

from keras_amb.cli.common import BACKENDS  # noqa: F401 (re-exported)
from keras_amb.cli.common import _set_verbose
from keras_amb.cli.common import run_reporting_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="keras-amb")
def cli():
    """Train image classifiers whose attention maps explain their decisions.

    \b
    Quick start (built-in synthetic dataset, a few minutes on a 2-core CPU):
      keras-amb train --dataset synthetic
      keras-amb visualize some_image.png
      keras-amb predict photos/ --model saved_models/RUN --format csv

    The model is an Attention Branch Network improved by an Attention Mining
    Branch, Prototype Conformity loss and Complement Objective Training.
    Runs land in saved_models/DATASET-ARCHITECTURE-TIMESTAMP/; every command
    that reads a model takes such a folder or a bare .keras file.

    \b
    Exit codes: 0 done; 1 the work failed (a file that cannot be read or
    written, a damaged model, a failed image); 2 a usage mistake (an unknown
    option or value, a bad --set, a bad KERAS_* environment variable).
    """
    from keras_amb import settings

    run_reporting_errors(settings.check_environment)


def _register():
    from keras_amb.cli.ablate import ablate
    from keras_amb.cli.evaluate import evaluate
    from keras_amb.cli.export import export
    from keras_amb.cli.info import info
    from keras_amb.cli.predict import predict
    from keras_amb.cli.review import review
    from keras_amb.cli.train import train
    from keras_amb.cli.visualize import visualize

    for command in (train, visualize, predict, evaluate, info, export, ablate, review):
        # `info` reads files only: it imports no TensorFlow to be verbose about.
        if command is not info:
            command.params.append(click.Option(
                ["--verbose"], is_flag=True, is_eager=True, expose_value=False,
                callback=_set_verbose,
                help="Show TensorFlow's start-up lines and the libraries' warnings."))
        cli.add_command(command)


_register()


def main():
    cli(prog_name="keras-amb")


if __name__ == "__main__":
    main()
