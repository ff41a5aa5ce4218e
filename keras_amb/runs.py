"""Run folders: where training writes, atomically, and how runs are found.

A run folder holds `config.yaml` (the resolved config), `labels.txt`,
`state.json` (stage and completed epochs, written after each checkpoint),
`history.csv`, `logs/` (TensorBoard), `checkpoints/` (`<stage>-last.keras`,
`<stage>-best.keras`), `abn.keras` (the pre-trained ABN) and `model.keras`
(the final model).
"""

import datetime
import json
import os
import shutil
import tempfile

DEFAULT_ROOT = "saved_models"
STATE_FILE = "state.json"


class RunError(ValueError):
    """A run folder that is missing, incomplete or not writable."""


def timestamp():
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def default_run_dir(dataset, model, root=DEFAULT_ROOT):
    name = os.path.basename(os.path.normpath(str(dataset))) or "data"
    return os.path.join(root, f"{name}-{model}-{timestamp()}")


def _atomic_write(path, suffix, write):
    """Calls `write(tmp_path)`, syncs the file, then renames it onto `path`.

    A process killed at any moment leaves either the old file or the new one,
    never a partial file (the temporary one is hidden: `.tmp-*`).
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    _atomic_write(path, ".txt", write)


def atomic_save_model(model, path):
    """`model.save(path)` through a temporary file and a rename."""
    _atomic_write(path, ".keras", model.save)


def read_state(run_dir):
    path = os.path.join(run_dir, STATE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_state(run_dir, state):
    atomic_write_text(os.path.join(run_dir, STATE_FILE), json.dumps(state, indent=2))


def check_writable(directory, min_free_bytes=200 * 2**20):
    """Fails before training when the output cannot be written."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise RunError(f"Cannot create output folder {directory}: {error.strerror}") from None
    probe = os.path.join(directory, ".write-test")
    try:
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise RunError(f"Output folder {directory} is not writable: {error.strerror}") from None
    free = shutil.disk_usage(directory).free
    if free < min_free_bytes:
        raise RunError(
            f"Only {free / 2**20:.0f} MiB free where {directory} is; training "
            f"needs at least {min_free_bytes / 2**20:.0f} MiB for checkpoints."
        )


def run_dir_of(run):
    """The run folder of a run folder or of a model file inside one."""
    run = os.fspath(run)
    return run if os.path.isdir(run) else os.path.dirname(os.path.abspath(run))


def find_model_file(run):
    """The model file of a run folder (or a `.keras` file given directly)."""
    run = os.fspath(run)
    if os.path.isfile(run):
        return run
    if not os.path.isdir(run):
        raise RunError(f"No such run folder or model file: {run}")
    for candidate in (
        "model.keras",
        os.path.join("checkpoints", "proposed-best.keras"),
        "abn.keras",
        os.path.join("checkpoints", "abn-best.keras"),
    ):
        path = os.path.join(run, candidate)
        if os.path.isfile(path):
            return path
    raise RunError(
        f"{run} holds no trained model yet (no model.keras); finish or resume "
        f"the run with `keras-amb train --resume {run}`."
    )


def newest_run(root=DEFAULT_ROOT):
    """The most recently written run under `root` that holds a model, or None."""
    if not os.path.isdir(root):
        return None
    runs = []
    for entry in os.scandir(root):
        if entry.is_dir() and os.path.isfile(os.path.join(entry.path, "model.keras")):
            runs.append((os.path.getmtime(os.path.join(entry.path, "model.keras")), entry.path))
    return max(runs)[1] if runs else None


def read_labels(run_dir):
    path = os.path.join(run_dir, "labels.txt")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]
