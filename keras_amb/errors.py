"""The errors keras-amb raises for users to fix, in one place.

Every one derives from `KerasAmbError`; its message names the file, option
or value at fault and says what to do, and the command line prints it as
one line without a traceback (anything else is a bug and keeps its
traceback). Each also derives from the built-in type callers caught before
this module existed (`ValueError`, `RuntimeError`, `OSError`), so
`except ValueError` still catches a `ConfigError`.

This module imports nothing, so reporting an error imports no Keras.

Example:

```python
from keras_amb import errors
from keras_amb.app import config

try:
    config.resolve("no_such_config")
except errors.KerasAmbError as error:
    print(error)  # one line naming the config and the ones that exist
```
"""


class KerasAmbError(Exception):
    """Base of every error meant for the user; the message says what to fix."""


class ConfigError(KerasAmbError, ValueError):
    """A configuration problem; the message names the file or option."""


class CommandLineError(ConfigError):
    """A bad value given on the command line (an option or `--set`): a usage
    error, exit code 2; the message names the option."""


class SettingError(KerasAmbError, ValueError):
    """An environment variable with a value keras-amb cannot use; the message
    names the variable (`keras_amb.settings`)."""


class DatasetError(KerasAmbError, ValueError):
    """A dataset that cannot be used as given (unknown name, a folder without
    class subfolders, ...); the message names it."""


class DatasetUnavailableError(KerasAmbError, RuntimeError):
    """A dataset that is neither prepared locally nor downloadable now."""


class ImageReadError(KerasAmbError, ValueError):
    """An image file that cannot be read; the message names the file."""


class DistributionError(KerasAmbError, ValueError):
    """`--distribute` on a backend or setup that cannot do it."""


class ExportError(KerasAmbError, ValueError):
    """An export that cannot be written; the message says why."""


class FileWriteError(KerasAmbError, OSError):
    """A file that cannot be written; the message names it and says why."""

    def __str__(self):
        return self.args[0] if self.args else super().__str__()


class NonFiniteLossError(KerasAmbError, RuntimeError):
    """A loss component became NaN or infinite; the message names it, the
    epoch and the batch."""


class WeightsUnavailableError(KerasAmbError, RuntimeError):
    """Pretrained weights that can be neither found nor downloaded."""


class RunError(KerasAmbError, ValueError):
    """A run folder or model file that is missing, incomplete, busy or not
    writable; the message names it."""


class OutputError(KerasAmbError, ValueError):
    """An output path that cannot be used; the message names the option and
    the path (and the input it would destroy)."""


class UnknownClassError(KerasAmbError, ValueError):
    """A class name that is not one of a model's classes."""


class ReviewError(KerasAmbError, ValueError):
    """A request the review refuses; `status` is the HTTP status to answer."""

    status = 400


class UnknownImageError(ReviewError):
    """No such image (or no fine-tuned model yet) in the review (404)."""

    status = 404


class MapConflictError(ReviewError):
    """The map changed since the page loaded it, or a fine-tuning run is
    already running (409)."""

    status = 409


class ReadOnlyError(ReviewError):
    """The review's output folder cannot be written (403)."""

    status = 403
