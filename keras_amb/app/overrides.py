"""Command-line overrides of a config: dotted keys and `--set KEY=VALUE`.

`keras_amb.app.config.resolve` merges them over the YAML file. A key is the
YAML path of the value, dotted for nested ones (`optimizer.momentum`,
`synthetic.train_size`), and may start with the name of its section in the
typed config (`model.pc_weight`, `schedule.epochs`; see
`keras_amb.app.run_config`). A value given with `--set` is read as YAML.

Example:

```python
from keras_amb.app import overrides

overrides.nest_overrides({"optimizer.momentum": 0.8, "model.pc": False})
# {"optimizer": {"momentum": 0.8}, "pc": False}
overrides.parse_assignments(["amb_weight=1e-2", "weights=null"])
# {"amb_weight": 0.01, "weights": None}
```
"""

import re

from keras_amb.app import yaml_reader
from keras_amb.errors import CommandLineError
from keras_amb.errors import ConfigError
from keras_amb.app.run_config import SECTION_OF
from keras_amb.app.run_config import SECTIONS

# `--set model.pc_weight=1`: a dotted key may start with its section's name.
SECTION_NAMES = tuple(SECTIONS)
# `1e-4`: a number to a reader, a string to YAML 1.1 (PyYAML wants `1.0e-4`).
EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _error(where):
    """The error for a mistake found in `where`: the command line's are
    usage errors (exit code 2)."""
    command_line = where.startswith(("command line", "--set"))
    return CommandLineError if command_line else ConfigError


def key_path(key, where="command line"):
    """A dotted config key as its YAML path: `optimizer.learning_rate` ->
    `["optimizer", "learning_rate"]`; a leading section name is dropped
    (`model.pc_weight` -> `["pc_weight"]`) once checked to be the key's own."""
    parts = str(key).split(".")
    if len(parts) > 1 and parts[0] in SECTION_NAMES:
        section, parts = parts[0], parts[1:]
        home = SECTION_OF.get(parts[0])
        if home is not None and home != section:
            raise _error(where)(
                f"{where}: {parts[0]!r} is in the {home} section, not {section} "
                f"(write {home}.{'.'.join(parts)} or {'.'.join(parts)})"
            )
    if not all(parts):
        raise _error(where)(f"{where}: {key!r} is not a config key")
    return parts


def nest_overrides(overrides, where="command line", keep_none=False, into=None):
    """Flat overrides with dotted keys as the nested mapping YAML would give:
    `{"optimizer.learning_rate": 0.1, "model.pc": False}` ->
    `{"optimizer": {"learning_rate": 0.1}, "pc": False}`. Tuples become
    lists, as in YAML. None values (options not given) are left out unless
    `keep_none` (`--set weights=null` sets None). Merged into `into` when
    given (a mapping this function made), else into a new mapping."""
    nested = {} if into is None else into
    for key, value in overrides.items():
        if value is None and not keep_none:
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)  # later keys merge into it, not into the caller's
        parts = key_path(key, where)
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise _error(where)(f"{where}: {key!r} sets inside {part!r}, which is not a mapping")
        last = parts[-1]
        if isinstance(value, dict) and isinstance(target.get(last), dict):
            target[last].update(value)
        else:
            target[last] = value
    return nested


def parse_assignments(assignments):
    """`--set KEY=VALUE` strings as `{dotted key: value}`; VALUE is read as
    YAML (`0.5`, `true`, `null`, `[0.5, 1.0]`), and a number in exponent
    form (`1e-4`, which YAML 1.1 leaves a string) is a number."""
    parsed = {}
    for text in assignments:
        key, sep, raw = str(text).partition("=")
        key = key.strip()
        if not sep or not key:
            raise CommandLineError(
                f"--set {text!r}: expected KEY=VALUE, e.g. --set optimizer.momentum=0.8 "
                "or --set model.pc_weight=1"
            )
        value = yaml_reader.load(raw, f"--set {key}", error=CommandLineError)
        if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)
        key_path(key, f"command line: --set {key}")
        parsed[key] = value
    return parsed
