"""A least-recently-used cache bounded in bytes, for the review page's
pictures, thumbnails and maps (a 16 Mpx photo's PNG is tens of MB, so a
bound by entry count says nothing about memory)."""

import collections
import threading


def _size(value):
    """Bytes a cached value holds (PNG bytes, arrays)."""
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    try:
        return len(value)
    except TypeError:
        return 64


class ByteCache:
    """Values by key, at most `max_bytes` in all; the least recently used go
    first, and a value over a quarter of the bound is not kept. Safe to use
    from several threads (the review page's requests and its scorer).

    Args:
        max_bytes: int, the bound.

    Example:
    >>> cache = ByteCache(1000)
    >>> len(cache.get("a", lambda: b"x" * 100))
    100
    >>> cache.bytes
    100
    """

    def __init__(self, max_bytes):
        if max_bytes <= 0:
            raise ValueError(f"`max_bytes` must be > 0. Received: max_bytes={max_bytes!r}")
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._values = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make):
        """The value of `key`, made by `make()` (outside the lock) when absent."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = make()
        size = _size(value)
        with self._lock:
            if key not in self._values and size <= self.max_bytes // 4:
                self._values[key] = value
                self.bytes += size
            while self.bytes > self.max_bytes:
                _, dropped = self._values.popitem(last=False)
                self.bytes -= _size(dropped)
        return value

    def __len__(self):
        return len(self._values)
