"""Single flight: while one caller fetches an uncached request, others asking for the same key wait for it.

So several threads (or tasks) asking for the same uncached request at once cause one provider request. The
leader resolves the future with the cache entry; if it fails or is interrupted, with None, and each waiter
then asks for itself: a waiter never receives another caller's error, cancellation or Ctrl-C (the key leaves
out credentials, so the waiters' keys may differ from the leader's).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

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
        future.set_running_or_notify_cancel()  # a waiter's cancellation can no longer cancel it for everyone
        return True, future


def release(key: str, future: Future, entry: Any = None) -> None:
    """The leader is done: waiters get `entry` (None: ask for yourselves); later callers find the cache."""
    with _lock:
        if _in_flight.get(key) is future:
            del _in_flight[key]
    if not future.done():
        future.set_result(entry)


async def wait(future: Future) -> Any:
    """Await the leader's entry from a task; cancelling this task leaves the leader and other waiters alone."""
    import asyncio

    return await asyncio.shield(asyncio.wrap_future(future))
