"""One trainer per run folder: an exclusive `flock` on `<run>/.lock`.

The kernel releases the lock when its holder exits, even when killed, so a
killed run never blocks its own `--resume`; the file names the holder's
process for the message a second trainer gets.
"""

import contextlib
import os

from keras_amb.errors import RunError


@contextlib.contextmanager
def hold(run_dir, lock_path):
    """Holds the lock of `run_dir` (its file `lock_path`) in the `with`
    block; `RunError` naming the holder if another process has it.

    Example:
    >>> with hold("saved_models/RUN", "saved_models/RUN/.lock"):  # doctest: +SKIP
    ...     train()
    """
    import fcntl

    os.makedirs(run_dir, exist_ok=True)
    handle = open(lock_path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunError(
                f"{run_dir} is being trained by process {holder}; wait for "
                "it to finish (or stop it) before training in this folder again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
