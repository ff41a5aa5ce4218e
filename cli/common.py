"""What every `keras-amb` command shares: choosing the backend before Keras
loads, one-line errors with their exit codes, the model and input checks
made before any work. The commands (`cli/<command>.py`) import from here,
and `cli/main.py` registers them, so nothing imports back up.
"""

import os
import sys
import warnings

import click

BACKENDS = ("tensorflow", "jax", "torch")
# Set by every command's --verbose (and KERAS_AMB_DEBUG=1): show TensorFlow's
# start-up lines and the libraries' warnings.
_VERBOSE = False


def _verbose():
    return _VERBOSE or os.environ.get("KERAS_AMB_DEBUG") == "1"


def _set_verbose(ctx, param, value):
    global _VERBOSE
    _VERBOSE = bool(value)


def _import_tensorflow_quietly():
    """Imports TensorFlow and finds its devices with native stderr silenced.

    TensorFlow 2.20+ prints its start-up notices (oneDNN, CPU features) from
    C++ before its log level is read, whatever TF_CPP_MIN_LOG_LEVEL says, and
    looking for a GPU without a CUDA driver logs a `cuInit` error; all of it
    happens here, once. `--verbose` (or KERAS_AMB_DEBUG=1) shows them.
    """
    if "tensorflow" in sys.modules or _verbose():
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


def refuse_backend_assignment(assignments):
    """`--set backend=...` comes too late: the backend is chosen before Keras
    loads. A usage error points to `--backend`."""
    for assignment in assignments:
        key = assignment.partition("=")[0].strip()
        if key in ("backend", "runtime.backend"):
            raise click.UsageError(f"--set {key}: use --backend instead")


def set_backend(backend, models=(), load=True):
    """Chooses the Keras backend; must run before Keras is imported.

    `models` (the run folders or `.keras` files the command will load; None
    is skipped) are checked first from their archives alone
    (`Run.check_model`), so that a file that is not a keras-amb model is
    refused in a second, before TensorFlow's 5-10 s of imports. With
    `load=False` TensorFlow is not imported yet (a command that may stop
    before it needs it, as `train --print-config` or a bad config does,
    calls `load_backend` when it does).
    """
    if not _verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # Keras's ONNX export asks numpy for `np.object`, which warns.
        warnings.filterwarnings("ignore", message=r"In the future `np\.\w+` will be defined",
                                category=FutureWarning)
    if backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != backend:
            raise click.UsageError(
                f"--backend {backend}: Keras was already imported with another backend"
            )
        os.environ["KERAS_BACKEND"] = backend
    if any(model is not None for model in models):
        run_reporting_errors(_check_models, models)
    if load:
        load_backend()


def load_backend():
    """Imports TensorFlow (quietly) after `set_backend(..., load=False)`."""
    _import_tensorflow_quietly()


def _check_models(models):
    from keras_amb.app.runs import Run

    for model in models:
        if model is not None:
            Run.open(model).check_model()


class UserError(click.ClickException):
    """An error shown as one clear line, without a traceback (exit code 1:
    the command could not do its work)."""


class UsageLine(click.ClickException):
    """A usage mistake (a bad option value, a bad environment variable) shown
    as one clear line (exit code 2, as click's own usage errors)."""

    exit_code = 2


def _user_errors():
    """The errors the library raises for users to fix (`keras_amb.errors`,
    which imports no Keras, so `info` reports its errors without it), and
    permission errors; anything else is a bug and keeps its traceback."""
    from keras_amb.errors import KerasAmbError

    return (KerasAmbError, PermissionError)


def model_given(positional, option, command):
    """The model of `info` and `review`, which take it as every command does
    (`--model RUN`) or, as before, as their argument; both is a usage error."""
    if positional and option and positional != option:
        raise click.UsageError(f"give the model once: --model {option} or {positional}")
    run = option or positional
    if not run:
        raise click.UsageError(f"give the model: keras-amb {command} --model RUN "
                               "(a run folder or a .keras file)")
    if not os.path.exists(run):
        raise click.BadParameter(f"{run!r} does not exist", param_hint="--model")
    return run


def image_paths(inputs, exclude=()):
    """The image files INPUTS name, folders expanded (outside the folders
    `exclude` names: earlier outputs are not inputs); none is a usage error
    (exit code 2) naming what was given."""
    from keras_amb.inference import expand_inputs
    from keras_amb.names import for_terminal

    # A path given on the command line that is not there is a typo: said at
    # once, before any model loads (an unreadable image is the command's to
    # report, with the others still done).
    missing = [item for item in inputs if not os.path.lexists(item)]
    if missing:
        import difflib

        shown = ", ".join(for_terminal(m) for m in missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        near = difflib.get_close_matches(
            os.path.basename(missing[0]),
            os.listdir(os.path.dirname(missing[0]) or ".")
            if os.path.isdir(os.path.dirname(missing[0]) or ".") else [], n=1)
        hint = f"; did you mean {for_terminal(near[0])}?" if near else ""
        raise UsageLine(f"no such file or folder: {shown}{hint}")
    paths = expand_inputs(inputs, exclude=[e for e in exclude if e])
    if not paths:
        raise click.UsageError(
            f"no image files in {', '.join(inputs)} (looked for JPEG, PNG, BMP, GIF and WebP)")
    return paths


def run_reporting_errors(fn, *args, **kwargs):
    """Runs a command's work: a usage mistake or a failure becomes one line
    (exit code 2 or 1), and output folders the command made and left empty
    are removed (`safety.made_folders`)."""
    from keras_amb.app import safety

    outer, made = safety.made_folders, safety.OutputFolders()
    safety.made_folders = made
    try:
        return _report(fn, *args, **kwargs)
    except BaseException:
        made.discard_empty()
        raise
    finally:
        safety.made_folders = outer


def _report(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except click.ClickException:
        raise
    except KeyboardInterrupt:
        raise click.Abort() from None
    except _user_errors() as error:
        if os.environ.get("KERAS_AMB_DEBUG") == "1":
            raise
        from keras_amb.errors import CommandLineError
        from keras_amb.errors import SettingError
        from keras_amb.names import for_terminal

        if isinstance(error, PermissionError):
            raise UserError(for_terminal(f"{error.filename or error}: permission denied")) from None
        # Names in messages are data: one line, no terminal escapes.
        if isinstance(error, (CommandLineError, SettingError)):
            raise UsageLine(for_terminal(error)) from None
        raise UserError(for_terminal(error)) from None
