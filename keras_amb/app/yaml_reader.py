"""YAML that cannot exhaust the machine: bounded size, depth and aliases.

Config files and `--set` values are small, but YAML can make a small text
large: aliases expand (a "billion laughs" of 600 bytes is 10^9 values once
walked), and deep nesting overflows the parser's recursion. `load` reads at
most `MAX_BYTES`, composes the document without expanding aliases, counts
the values it would expand to and its depth, and only then builds it; each
refusal is a `ConfigError` of one line naming the source. Tags stay those of
`yaml.SafeLoader` (no code runs).

Example:

```python
from keras_amb.app import yaml_reader

yaml_reader.load("epochs: 3\\n", "my.yaml")   # {'epochs': 3}
```
"""

import yaml

from keras_amb.errors import ConfigError

MAX_BYTES = 2**20
# Values (scalars, lists, mappings) the document expands to, aliases counted
# each time they are used; a full config has about 80.
MAX_VALUES = 10_000
MAX_DEPTH = 32


def load(text, source, error=ConfigError):
    """The YAML document in `text` (str), or None when it is empty.

    Args:
        text: str, the document.
        source: str, where it came from (a file, `--set KEY`), for messages.
        error: the exception class raised.

    Raises:
        `error`: not YAML, over `MAX_BYTES`, nested over `MAX_DEPTH` levels,
            or expanding to over `MAX_VALUES` values.
    """
    if len(text) > MAX_BYTES:
        raise error(f"{source}: {len(text):,} characters, over the {MAX_BYTES // 2**20} MiB "
                    "a config may have")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise error(f"{source}: nested too deeply (over {MAX_DEPTH} levels)") from None
        except yaml.YAMLError as problem:
            raise error(f"{source}: not valid YAML: {_first_line(problem)}") from None
        if node is None:
            return None
        _check_size(node, source, error)
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as problem:
            raise error(f"{source}: not valid YAML: {_first_line(problem)}") from None
    finally:
        loader.dispose()


def _first_line(problem):
    return " ".join(str(problem).split())[:300]


def _check_size(root, source, error):
    """Walks the composed nodes as construction would (an alias counted each
    time it is used), stopping at the first bound passed."""
    stack, values = [(root, 1)], 0
    while stack:
        node, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            raise error(f"{source}: expands to over {MAX_VALUES:,} values (YAML aliases "
                        "repeated?); a config is a short mapping")
        if depth > MAX_DEPTH:
            raise error(f"{source}: nested too deeply (over {MAX_DEPTH} levels)")
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)
