"""The environment variables keras-amb reads, each checked in one place.

Every variable is read through this module, so a bad value is refused the
same way everywhere: one line naming the variable, its value and what it
must be, before any work (the command line checks them all at start,
`check_environment`). A variable that is not set gives the default.

| variable | what it bounds | default |
|---|---|---|
| `KERAS_AMB_MAX_PIXELS` | pixels of one input image, from its header | 50,000,000 |
| `KERAS_AMB_MAX_ASPECT_RATIO` | longer side / shorter side of an image | 20 |
| `KERAS_AMB_MAX_MODEL_BYTES` | weights a model file may declare | 1 GiB |
| `KERAS_BACKEND` | Keras's backend | tensorflow |

Example:

```python
from keras_amb import settings

settings.positive_number("KERAS_AMB_MAX_PIXELS", 50_000_000, integer=True)
```
"""

import difflib
import math
import os

from keras_amb.errors import SettingError

BACKENDS = ("tensorflow", "jax", "torch")
# (default, integer) of the numeric limits.
LIMITS = {
    "KERAS_AMB_MAX_PIXELS": (50_000_000, True),
    "KERAS_AMB_MAX_ASPECT_RATIO": (20.0, False),
    "KERAS_AMB_MAX_MODEL_BYTES": (2**30, True),
}


def positive_number(name, default, integer=False, minimum=1):
    """The value of the environment variable `name`: a finite number >=
    `minimum` (a whole one with `integer`), or `default` when it is unset
    or empty.

    Raises:
        SettingError: naming the variable and its value (`nan`, `inf`,
            `abc`, `0` and `1.5` for an integer are all refused).
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    kind = "a whole number" if integer else "a number"
    try:
        value = float(text)
        if integer and value != int(value):
            raise ValueError
    except (ValueError, OverflowError):
        value = None
    if value is None or not math.isfinite(value) or value < minimum:
        raise SettingError(f"{name}={text!r}: must be {kind} >= {minimum:g}; unset it "
                           f"for the default ({default:,})")
    return int(value) if integer else value


def limit(name):
    """One of `LIMITS`, checked."""
    default, integer = LIMITS[name]
    return positive_number(name, default, integer=integer)


def check_backend(value=None):
    """`KERAS_BACKEND` (or `value`) is one keras-amb supports, else a
    `SettingError` naming it, with the closest name."""
    value = os.environ.get("KERAS_BACKEND", "") if value is None else value
    if not value or value in BACKENDS:
        return value or None
    close = difflib.get_close_matches(value, BACKENDS, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise SettingError(
        f"KERAS_BACKEND={value!r}: must be tensorflow, jax or torch{hint}")


def check_environment():
    """Checks every variable above once; raises the first `SettingError`."""
    check_backend()
    for name in LIMITS:
        limit(name)
