"""`asyncify(program)`: an async function that runs a synchronous program on a worker thread.

The caller's context (settings from `turbodspy.context`, usage tracker, callbacks) travels with each call, and at
most `settings.async_max_workers` calls run at once (the rest wait for a free worker).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from turbodspy.settings import settings

_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _workers() -> ThreadPoolExecutor:
    global _pool
    size = settings.async_max_workers
    with _pool_lock:
        if _pool is None or _pool[0] != size:
            if _pool is not None:
                _pool[1].shutdown(wait=False)
            _pool = (size, ThreadPoolExecutor(max_workers=size, thread_name_prefix="turbodspy-asyncify"))
        return _pool[1]


def asyncify(program: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Wrap `program` so `await wrapped(**inputs)` runs it on a worker thread without blocking the event loop."""

    async def async_program(*args: Any, **kwargs: Any) -> Any:
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, program, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(_workers(), call)

    return async_program
