"""Names are data: file, folder and class names shown safely.

A name comes from a file system, a folder dataset or a model file, and can
hold anything: a newline, a terminal escape sequence (`\\x1b]0;...`), bytes
that are not UTF-8 (`os.fsdecode` turns them into lone surrogates, which no
encoder accepts), or `$...$`, which matplotlib reads as mathematics. Each
place a name goes has its own function:

- `for_terminal`: control characters, bidirectional overrides and
  undecodable bytes escaped (`\\n`, `\\x1b`, `\\xe9`), so a name is one line
  and cannot drive the terminal;
- `for_figure`: the same, with `$` made literal for matplotlib;
- `for_text`: only the undecodable bytes escaped, for CSV cells and files
  in UTF-8 (the csv module quotes the rest).

JSON needs nothing: `json.dumps` escapes every character outside ASCII.

Example:

```python
from keras_amb import names

names.for_terminal("jay\\x1b[2J\\n")   # 'jay\\\\x1b[2J\\\\n'
names.for_figure("$^$.png")          # '\\\\$^\\\\$.png'
```
"""

_BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x2028, 0x2029}
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _undecodable(code):
    return 0xDC80 <= code <= 0xDCFF


def for_terminal(name):
    """`name` (any object; str() of it) as one safe line for a terminal."""
    out = []
    for ch in str(name):
        code = ord(ch)
        if _undecodable(code):
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif code in _BIDI or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def for_figure(name):
    """`name` for a matplotlib text: `for_terminal`, and `$` literal (no
    mathtext)."""
    return for_terminal(name).replace("$", "\\$")


def for_text(name):
    """`name` encodable as UTF-8: undecodable bytes escaped (`\\xe9`)."""
    text = str(name)
    if not any(_undecodable(ord(ch)) or 0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return text
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if _undecodable(ord(ch))
                   else "\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)
