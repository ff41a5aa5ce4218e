"""Atomic file writes: a reader (or a killed process) never sees half a file.

Every file keras-amb writes that something else reads (checkpoints, state,
configs, labels, results, figures, maps, exported models) goes through
`atomic_write`. What each kind of output path gets, as a careful Unix tool
does it:

- nothing there: a new file with the user's umask (as `open` would make
  it), not `mkstemp`'s private 0600, so a colleague or a serving container
  running as another user can read it;
- a regular file: replaced whole, keeping its permission bits (a private
  0600 file stays private);
- a symbolic link: written through; the file it points to is replaced (by
  the same two rules) and the link stays a link;
- anything else (a device node, a FIFO, a socket, a folder): refused with
  `FileWriteError`, before anything is written (`/dev/null` is never
  replaced by a file, even as root).

A write that fails (no space left, no permission) raises `FileWriteError`
naming the file, and leaves the old file, if any, untouched.
"""

import errno
import os
import stat
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


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"))


def write_target(path):
    """Where a write to `path` lands, and the permission bits it gets.

    Follows symbolic links (the link is written through, never replaced).

    Returns:
        `(real_path, mode)`: the file to replace or create, and the mode the
        new file gets: the existing file's own, or 0666 less the umask.

    Raises:
        FileWriteError: `path` is (or points to) a device node, a FIFO, a
            socket or a folder; or a link loop.

    Example:
    >>> write_target("/tmp/keras-amb-new-file.txt")[0]
    '/tmp/keras-amb-new-file.txt'
    """
    real, mode, problem = inspect_target(path)
    if problem:
        raise FileWriteError(f"Cannot write {path}: {problem}")
    return real, mode


def inspect_target(path):
    """`(real_path, mode, problem)`: `write_target`'s answer without raising;
    `problem` is None or says why `path` cannot be written (for messages
    that name the option, as `safety.check_output_file`'s)."""
    path = os.fspath(path)
    real = os.path.realpath(path)
    try:
        status = os.stat(real)
    except FileNotFoundError:
        return real, 0o666 & ~current_umask(), None
    except OSError as error:
        return real, None, _reason(error)
    if stat.S_ISREG(status.st_mode):
        return real, stat.S_IMODE(status.st_mode) & 0o777, None
    kind = next((name for test, name in _KINDS if test(status.st_mode)), "not a regular file")
    via = f"a link to {real}, which " if real != os.path.abspath(path) else ""
    return real, None, f"{via}is {kind}, not a regular file; give a file path"


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
    never a partial one (the temporary file is hidden: `.tmp-*`). A new file
    gets the mode `open` would give it (0666 less the umask), a replaced one
    keeps its own; a link is written through (`write_target`).

    Args:
        path: str, the file to write.
        write: callable taking the temporary path and writing the file there.
        suffix: str, suffix of the temporary file (some writers, such as
            `keras.Model.save`, insist on a file extension).

    Raises:
        FileWriteError: the folder or the file cannot be written (naming
            `path`: no permission, no space left, a device node, ...).

    Example:
    >>> atomic_write("/tmp/keras-amb-doctest.txt",
    ...              lambda tmp: open(tmp, "w").write("ok"))  # doctest: +SKIP
    """
    target, mode = write_target(path)
    directory = os.path.dirname(target)
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
        os.close(fd)
        os.chmod(tmp, mode)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
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


def atomic_write_directory(path, write):
    """Calls `write(tmp_dir)`, then renames the folder onto `path`, which must
    not exist: a reader watching the parent (TF Serving) never sees half of
    it, and nothing is overwritten."""
    import shutil

    if os.path.lexists(path):
        raise FileWriteError(f"Cannot write {path}: it already exists")
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
        self._target, mode = write_target(path)
        directory = os.path.dirname(self._target)
        try:
            os.makedirs(directory, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                                            suffix=os.path.splitext(path)[1])
            os.chmod(self.tmp, mode)
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
            os.replace(self.tmp, self._target)
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
