"""Single flight: while one caller fetches an uncached request, others asking for the same key wait for it.

So several threads (or tasks) asking for the same uncached request at once cause one provider request.
The leader resolves the future with the cache entry (or the error); waiters read it as a cache hit.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future

_in_flight: dict[str, Future] = {}
_lock = threading.Lock()


def claim(key: str) -> tuple[bool, Future]:
    """(True, future) for the caller that must fetch `key`; (False, future) for those that wait on it."""
    from concurrent.futures import Future  # only misses get here: keep it off the import path

    with _lock:
        future = _in_flight.get(key)
        if future is not None:
            return False, future
        future = _in_flight[key] = Future()
        return True, future


def release(key: str) -> None:
    """The leader is done (the future is resolved): later callers find the cache instead."""
    with _lock:
        _in_flight.pop(key, None)
