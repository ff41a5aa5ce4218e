"""Checks made before any work: outputs that can be written and that never
destroy an input.

Every command that writes checks its outputs first, so a mistyped or
unwritable path fails in a second, not after the work, and an output that
would overwrite what the command reads (an input image, the model file) is
refused, naming both:

- `check_output_file(path, option)`: a file that can be created (its folder
  is made if needed) and is not a folder;
- `check_output_folder(path, option)`: a folder that exists or can be made,
  and can be written (one it made is removed again, if still empty, when
  the command fails: `made_folders`);
- `check_not_an_input(path, option, inputs, model_path)`: `path` (a file, or
  a folder files are written into) is not, and does not hold, an input or
  the model file.
"""

import os
import tempfile

from keras_amb.errors import OutputError  # noqa: F401 (re-exported)


def _same(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _probe(folder, option, path):
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
    except OSError as error:
        raise OutputError(
            f"{option} {path}: cannot write in {folder or '.'} ({error.strerror})"
        ) from None
    os.close(fd)
    os.remove(probe)


def check_output_file(path, option="--output"):
    """Fails unless `path` can be written as a file (its folder is created).

    A regular file or nothing is fine, a link is written through; a device
    node, a FIFO or a socket is refused (`files.write_target`).
    """
    from keras_amb.files import inspect_target

    path = os.fspath(path)
    if os.path.isdir(path):
        raise OutputError(f"{option} {path}: is a folder; give the file to write")
    target, _, problem = inspect_target(path)
    if problem:
        raise OutputError(f"{option} {path}: {problem}")
    folder = os.path.dirname(target)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"{option} {path}: {os.path.dirname(path)} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"{option} {path}: cannot create its folder {os.path.dirname(path)} "
            f"({error.strerror})"
        ) from None
    _probe(folder, option, path)  # the file itself is replaced by a rename


def _make_folder(path, option):
    """Makes `path` (and its parents); returns the folders it made."""
    missing = _missing_folders(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{option} {path}: cannot create it ({error.strerror})") from None
    return missing


def _missing_folders(path):
    """The folders `os.makedirs(path)` would create, outermost first."""
    missing, current = [], os.path.abspath(path)
    while not os.path.exists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return missing[::-1]


class OutputFolders:
    """The folders a command made for its outputs, removed again if the
    command fails while they are still empty: a mistake leaves nothing
    behind. One per command (`keras_amb.cli.common.run_reporting_errors`).

    Example:
    >>> made = OutputFolders()
    >>> made.make("/tmp/keras-amb-doctest/out", "--output")  # doctest: +SKIP
    >>> made.discard_empty()  # doctest: +SKIP
    """

    def __init__(self):
        self.made = []

    def make(self, path, option="--output"):
        self.made.extend(_make_folder(path, option))

    def discard_empty(self):
        """Removes the folders made that are still empty, innermost first."""
        for folder in reversed(self.made):
            try:
                os.rmdir(folder)
            except OSError:
                pass  # not empty (the command wrote there), or gone
        self.made = []


# The current command's, while `keras_amb.cli.common.run_reporting_errors`
# runs one; None outside a command (nothing is recorded).
made_folders = None


def check_output_folder(path, option="--output", create=True):
    """Fails unless `path` is (or can be made as) a writable folder.

    Args:
        path: str, the folder.
        option: str, the option that named it (for the message).
        create: bool, make the folder now (else only its nearest existing
            parent is checked).
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{option} {path}: is a file, not a folder")
    if create:
        if made_folders is not None:
            made_folders.make(path, option)
        else:
            _make_folder(path, option)
        _probe(path, option, path)
        return
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"{option} {path}: {parent} is a file, not a folder")
    _probe(parent, option, path)


def why_not_writable(path, option="--output"):
    """None if `path` is (or was now made) a writable folder, else why not,
    in words (`check_output_folder`'s message)."""
    try:
        check_output_folder(path, option)
    except OutputError as error:
        return str(error)
    return None


def check_not_an_input(path, option, inputs=(), model_path=None, folders=None):
    """Refuses an output that is, or would overwrite, an input or the model.

    Args:
        path: str, the output file, or the folder written into.
        option: str, the option that named it (for the message).
        inputs: list of str, the input image files.
        model_path: str, list of str or None, the model file(s) read.
        folders: None when `path` is a file; else the folders files are
            written into (`path` and, say, `path/maps`): none of them may
            hold an input image or the model file.

    Raises:
        OutputError: naming the option, the output and the input.

    Example:
    >>> check_not_an_input("preds.jsonl", "--output", ["a.png"], "m.keras")
    """
    path = os.fspath(path)
    protected = [(os.fspath(p), "input image") for p in inputs]
    models = [model_path] if isinstance(model_path, (str, os.PathLike)) else model_path or []
    protected += [(os.fspath(m), "model file" if os.fspath(m).endswith(".keras")
                   else "run file") for m in models]
    for candidate, kind in protected:
        if not os.path.isfile(candidate):
            continue
        if folders is None:
            if os.path.exists(path) and _same(path, candidate):
                raise OutputError(
                    f"{option} {path}: is the {kind} {candidate}; refusing to overwrite it"
                )
            continue
        parent = os.path.dirname(os.path.abspath(candidate))
        for folder in folders:
            if os.path.isdir(folder) and _same(parent, folder):
                raise OutputError(
                    f"{option} {path}: holds the {kind} {candidate}, which it could "
                    "overwrite; write to another folder"
                )
