"""Atomic file writes: a reader (or a killed process) never sees half a file.

Every file keras-amb writes that something else reads (checkpoints, state,
configs, labels, results, figures, maps, exported models) goes through
`atomic_write`. Files come out with the user's umask (as `open` would make
them), not `mkstemp`'s private 0600, so a colleague or a serving container
running as another user can read them. A write that fails (no space left,
no permission) raises `FileWriteError` naming the file, and leaves the old
file, if any, untouched.
"""

import errno
import os
import tempfile

from keras_amb.errors import FileWriteError  # noqa: F401 (re-exported)


def current_umask():
    """The process's umask (read without changing it, where Linux allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _reason(error):
    if isinstance(error, PermissionError) or getattr(error, "errno", None) in (
        errno.EACCES, errno.EPERM, errno.EROFS,
    ):
        return f"permission denied ({error.strerror or error})"
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    return getattr(error, "strerror", None) or str(error)


def write_error(path, error):
    """A `FileWriteError` for `path` from the `OSError` that stopped it."""
    failure = FileWriteError(f"Cannot write {path}: {_reason(error)}")
    failure.errno = getattr(error, "errno", None)
    failure.filename = path
    return failure


def atomic_write(path, write, suffix=".tmp"):
    """Calls `write(tmp_path)`, syncs the file, then renames it onto `path`.

    A process killed at any moment leaves either the old file or the new one,
    never a partial one (the temporary file is hidden: `.tmp-*`). The file
    gets the mode `open` would give it (0666 less the umask).

    Args:
        path: str, the file to write.
        write: callable taking the temporary path and writing the file there.
        suffix: str, suffix of the temporary file (some writers, such as
            `keras.Model.save`, insist on a file extension).

    Raises:
        FileWriteError: the folder or the file cannot be written (naming
            `path`: no permission, no space left, ...).

    Example:
    >>> atomic_write("/tmp/keras-amb-doctest.txt",
    ...              lambda tmp: open(tmp, "w").write("ok"))  # doctest: +SKIP
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~current_umask())
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError) and not isinstance(error, FileWriteError):
            raise write_error(path, error) from error
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


def atomic_save_array(path, array):
    """`numpy.save(path, array)` through a temporary file and a rename."""
    import numpy as np

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write, suffix=".npy")


def atomic_save_image(path, array):
    """An 8-bit grey or RGB array saved as an image (format from `path`'s
    extension) through a temporary file and a rename."""
    from PIL import Image

    image_format = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=image_format),
                 suffix=os.path.splitext(path)[1])


def atomic_write_directory(path, write):
    """Calls `write(tmp_dir)`, then renames the folder onto `path`, which must
    not exist: a reader watching the parent (TF Serving) never sees half of
    it, and nothing is overwritten."""
    import shutil

    parent = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
        os.rmdir(tmp)  # writers such as tf.saved_model.save create it themselves
        write(tmp)
        os.rename(tmp, path)
    except BaseException as error:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, FileWriteError):
            raise write_error(path, error) from error
        raise


class AtomicFile:
    """A text file written in place of `path` only when closed successfully.

    Writes go to a hidden temporary file beside `path`; `close()` syncs it
    and renames it onto `path`; `discard()` (call it when the writing
    failed) removes it and leaves `path` as it was. For outputs written
    bit by bit, such as `keras-amb predict --output`.

    Args:
        path: str, the file to write.
        **kwargs: passed to `open` (`encoding`, `newline`).

    Example:
    >>> f = AtomicFile("/tmp/keras-amb-doctest.jsonl", encoding="utf-8")  # doctest: +SKIP
    >>> f.write("{}\\n"); f.close()  # doctest: +SKIP
    """

    def __init__(self, path, **kwargs):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                                            suffix=os.path.splitext(path)[1])
            os.chmod(self.tmp, 0o666 & ~current_umask())
        except OSError as error:
            raise write_error(path, error) from error
        self._file = os.fdopen(fd, "w", **kwargs)
        self._done = False

    def write(self, text):
        try:
            return self._file.write(text)
        except OSError as error:
            self.discard()
            raise write_error(self.path, error) from error

    def flush(self):
        try:
            self._file.flush()
        except OSError as error:
            self.discard()
            raise write_error(self.path, error) from error

    def close(self):
        """Commits the file (a no-op after `discard`)."""
        if self._done:
            return
        self._done = True
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.tmp, self.path)
        except OSError as error:
            self._remove()
            raise write_error(self.path, error) from error

    def discard(self):
        """Drops what was written; `path` stays as it was."""
        if self._done:
            return
        self._done = True
        self._remove()

    def _remove(self):
        try:
            self._file.close()
        except OSError:
            pass
        if os.path.exists(self.tmp):
            os.remove(self.tmp)
