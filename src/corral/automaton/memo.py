"""Caches that stay bounded in a long-lived process.

Masks are memoised at several levels (per terminal state across grammars, per crossing walk,
per automaton state). A server that compiles a new schema per request, or decodes new text for
days, would grow them without end; these forget their oldest entries past a limit instead.
What they forget is computed again when asked for.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

_ABSENT = object()


def _count(value: Any) -> int:
    return 1


class BoundedCache(dict):
    """A dict whose entries weigh ``weigh(value)`` (default 1: a count). Once their total passes
    ``limit``, the oldest entries (by their last write) are dropped down to seven eighths of it.
    Reads are plain dict reads; writes take a lock."""

    def __init__(self, limit: int, weigh: Callable[[Any], int] = _count) -> None:
        super().__init__()
        self.limit = limit
        self.weight = 0
        self._weigh = weigh
        self._lock = threading.Lock()

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._lock:
            self._put(key, value)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        value = dict.get(self, key, _ABSENT)
        if value is not _ABSENT:
            return value
        with self._lock:
            value = dict.get(self, key, _ABSENT)
            if value is _ABSENT:
                value = default
                self._put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            dict.clear(self)
            self.weight = 0

    def _put(self, key: Any, value: Any) -> None:
        old = dict.pop(self, key, _ABSENT)  # a key written again counts as new
        if old is not _ABSENT:
            self.weight -= self._weigh(old)
        dict.__setitem__(self, key, value)
        self.weight += self._weigh(value)
        if self.weight > self.limit:
            keep = self.limit - self.limit // 8
            for old_key in list(self):
                if self.weight <= keep:
                    break
                if old_key != key:
                    self.weight -= self._weigh(dict.pop(self, old_key))
