"""Atomic file writes: a reader (or a killed process) never sees half a file.

Every file keras-amb writes that something else reads (checkpoints, state,
configs, labels, results, exported models) goes through `atomic_write`.
"""

import os
import tempfile


def atomic_write(path, write, suffix=".tmp"):
    """Calls `write(tmp_path)`, syncs the file, then renames it onto `path`.

    A process killed at any moment leaves either the old file or the new one,
    never a partial one (the temporary file is hidden: `.tmp-*`).

    Args:
        path: str, the file to write.
        write: callable taking the temporary path and writing the file there.
        suffix: str, suffix of the temporary file (some writers, such as
            `keras.Model.save`, insist on a file extension).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
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
    """Writes `text` (UTF-8) to `path` atomically."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write, suffix=".txt")


def atomic_save_model(model, path):
    """`model.save(path)` through a temporary file and a rename."""
    atomic_write(path, model.save, suffix=".keras")


def atomic_write_directory(path, write):
    """Calls `write(tmp_dir)`, then renames the folder onto `path`, which must
    not exist: a reader watching the parent (TF Serving) never sees half of
    it, and nothing is overwritten."""
    import shutil

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
    try:
        os.rmdir(tmp)  # writers such as tf.saved_model.save create it themselves
        write(tmp)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
