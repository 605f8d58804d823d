"""The response cache: a memory tier bounded in bytes in front of the disk store, keyed by request keys.

Keys are computed in Rust (`_core.request_key`) and equal DSPy 3.4.1's, so both libraries agree on what "the
same request" is. Values on the memory tier are shared, not deep-copied: the LM layer hands out immutable
views of them.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from functools import wraps
from typing import Any

from turbodspy import _core

logger = logging.getLogger(__name__)


IGNORED_KEY_ARGS = ("api_key", "api_base", "base_url")
DEFAULT_MEMORY_MAX_BYTES = 1024**3


# `outputs` of a record whose outputs are just the text of each choice's message, as most calls' are: the text
# is stored once, in the response, and a hit reads it from there (`DiskStore.get_entry` does).
OUTPUTS_ARE_MESSAGE_CONTENTS = _core.OUTPUTS_ARE_MESSAGE_CONTENTS


def kept_outputs(outputs: list, response: dict[str, Any]) -> list | str:
    """What a record keeps as `outputs`: the marker when they are the text of the response's messages, else them."""
    choices = response.get("choices")
    if not isinstance(choices, list) or len(choices) != len(outputs):
        return outputs
    for output, choice in zip(outputs, choices, strict=True):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict) or "content" not in message:
            return outputs
        if not (output is None or type(output) is str) or message["content"] != output:
            return outputs
    return OUTPUTS_ARE_MESSAGE_CONTENTS


class CacheEntry:
    """One cached record held in memory, plus whatever a reader derived from it once (so later hits skip the work).

    Entries read from disk are `_core.StoredEntry` objects, which read alike: their record stays encoded
    (`stored`) until someone asks for all of it, and `leading` holds the `(outputs, cost, response_model)` of it
    that an LM hit needs.
    """

    __slots__ = ("derived", "record", "size")

    leading = None
    stored = None

    def __init__(self, record: Any, size: int):
        self.record = record
        self.size = size
        self.derived: Any = None


class Cache:
    """Two tiers, as DSPy's `Cache`: memory (LRU, bounded in entries and bytes), then the disk store."""

    def __init__(
        self,
        enable_disk_cache: bool,
        enable_memory_cache: bool,
        disk_cache_dir: str | os.PathLike | None,
        disk_size_limit_bytes: int | None = None,
        memory_max_entries: int = 1_000_000,
        memory_max_bytes: int = DEFAULT_MEMORY_MAX_BYTES,
    ):
        if enable_memory_cache and (memory_max_entries is None or memory_max_entries <= 0):
            raise ValueError(f"`memory_max_entries` must be a positive number, but received {memory_max_entries}")
        if enable_memory_cache and memory_max_bytes <= 0:
            raise ValueError(f"`memory_max_bytes` must be a positive number, but received {memory_max_bytes}")
        self.enable_memory_cache = enable_memory_cache
        self.enable_disk_cache = enable_disk_cache
        self.disk_cache_dir = os.fspath(disk_cache_dir) if disk_cache_dir is not None else None
        self.memory_max_entries = memory_max_entries
        self.memory_max_bytes = memory_max_bytes
        self._memory: OrderedDict[str, CacheEntry] = OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.Lock()
        self.disk = _open_disk_tier(self.disk_cache_dir, disk_size_limit_bytes) if enable_disk_cache else None
        self.enabled = self.enable_memory_cache or self.disk is not None

    # -- keys ---------------------------------------------------------------------------------------------------

    # `cache_key(request, ignored_args_for_cache_key=None, fn_identifier=None)`: the request key, SHA-256 of the
    # request's sorted-key JSON without the ignored (connection) args; `fn_identifier` is hashed as the request's
    # `_fn_identifier`. Pydantic models and callables in a request get DSPy's treatment (`transformed_request`).
    # One native call, not a method: a batch keys every request, and a Python frame costs as much as the key of a
    # small one. Subclasses override it as usual (`super().cache_key(request, ...)` works as before).
    cache_key = staticmethod(_core.cache_key)

    # -- the fast path used by the LM layer ---------------------------------------------------------------------

    def lookup(self, key: str) -> CacheEntry | None:
        """The entry for `key` from memory, else from disk (promoted to memory), else None."""
        if self.enable_memory_cache:
            # No lock: each OrderedDict operation is atomic under the GIL. A concurrent eviction may take the
            # key between the two calls, which only costs this entry its recency.
            entry = self._memory.get(key)
            if entry is not None:
                try:
                    self._memory.move_to_end(key)
                except KeyError:
                    pass
                return entry
        if self.disk is not None:
            entry = self.disk.get_entry(key)
            if entry is not None and self.enable_memory_cache:
                self._promote(key, entry)
            return entry
        return None

    def store(self, key: str, record: Any, *, memory: bool = True) -> CacheEntry:
        """Cache a record under `key`: on both tiers when it is a JSON-native dict, else in memory only."""
        size = _json_size(record)
        if self.disk is not None and isinstance(record, dict):
            try:
                self.disk.put(key, record)
            except (TypeError, ValueError) as exc:  # not data: the disk store holds data only
                logger.debug("Not storing %s on disk: %s", key, exc)
        if memory:
            return self._remember(key, record, size)
        return CacheEntry(record, size)

    def _remember(self, key: str, record: Any, size: int) -> CacheEntry:
        entry = CacheEntry(record, size)
        if self.enable_memory_cache:
            self._promote(key, entry)
        return entry

    def _promote(self, key: str, entry: CacheEntry) -> None:
        """Put `entry` in the memory tier under `key`, evicting the least recently used past either bound."""
        memory = self._memory
        with self._lock:
            previous = memory.pop(key, None)
            if previous is not None:
                self._memory_bytes -= previous.size
            memory[key] = entry
            self._memory_bytes += entry.size
            if len(memory) > self.memory_max_entries or self._memory_bytes > self.memory_max_bytes:
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        """Drop least recently used entries until both bounds hold (the caller holds the lock)."""
        memory = self._memory
        while memory and (len(memory) > self.memory_max_entries or self._memory_bytes > self.memory_max_bytes):
            _, evicted = memory.popitem(last=False)
            self._memory_bytes -= evicted.size

    # -- DSPy's generic API (request dicts in, values out) ------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if key in self._memory:
                return True
        return self.disk is not None and key in self.disk

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        if not self.enabled:
            return None
        try:
            key = self.cache_key(request, ignored_args_for_cache_key)
        except Exception:
            logger.debug("No cache key for request with keys %s", sorted(request))
            return None
        entry = self.lookup(key)
        if entry is None:
            return None
        # Each caller gets its own copy: decoding the stored bytes again is several times cheaper than a deep
        # copy of the objects (an entry read from disk keeps its bytes).
        return entry.stored.decode() if entry.stored is not None else copy.deepcopy(entry.record)

    def put(
        self,
        request: dict[str, Any],
        value: Any,
        ignored_args_for_cache_key: list[str] | None = None,
        enable_memory_cache: bool = True,
    ) -> None:
        if not self.enabled:
            return
        try:
            key = self.cache_key(request, ignored_args_for_cache_key)
        except Exception:
            logger.debug("No cache key for request with keys %s", sorted(request))
            return
        self.store(key, value, memory=enable_memory_cache and self.enable_memory_cache)

    def reset_memory_cache(self) -> None:
        with self._lock:
            self._memory.clear()
            self._memory_bytes = 0

    def save_memory_cache(self, filepath: str | os.PathLike) -> None:
        """Write the memory tier to a JSON file (never pickle): JSON-native records only."""
        with self._lock:
            items = {key: entry.record for key, entry in self._memory.items() if _is_json_native(entry.record)}
        with open(filepath, "w", encoding="utf-8") as f:
            json.dump({"format": "turbodspy-memory-cache", "version": 1, "entries": items}, f)

    def load_memory_cache(self, filepath: str | os.PathLike, allow_pickle: bool = False) -> None:
        """Load a file written by `save_memory_cache`. `allow_pickle` is accepted for DSPy's callers: nothing
        here is ever unpickled, so a DSPy `.pkl` memory cache is refused whatever it says."""
        try:
            with open(filepath, encoding="utf-8") as f:
                data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if not isinstance(data, dict) or data.get("format") != "turbodspy-memory-cache":
            raise ValueError(f"{filepath} is not a turbodspy memory-cache file (written by save_memory_cache)")
        for key, record in data["entries"].items():
            self._remember(key, record, _json_size(record))

    @property
    def memory_bytes(self) -> int:
        return self._memory_bytes

    def __len__(self) -> int:
        return len(self._memory)


def _open_disk_tier(directory: str | None, size_limit: int | None) -> Any:
    from turbodspy.clients.disk_cache import DiskCache, DiskCacheWarning, default_size_limit

    if size_limit is None:
        try:
            size_limit = default_size_limit()
        except ValueError as exc:
            # A bad environment variable must not stop `import turbodspy` (which builds the default cache).
            warnings.warn(f"{exc}; the disk cache is off until it is fixed.", DiskCacheWarning, stacklevel=4)
            return None
    return DiskCache(directory, size_limit)


def _json_size(record: Any) -> int:
    try:
        return len(json.dumps(record, separators=(",", ":")))
    except (TypeError, ValueError):
        return 1024


def _is_json_native(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def transformed_request(request: dict[str, Any], ignored: Any) -> dict[str, Any]:
    """The request with pydantic models and callables given DSPy's treatment, ignored args left out.
    (`_core.cache_key` calls it by this name for requests that are not plain data.)"""
    return {k: _transform_value(v) for k, v in request.items() if k not in ignored}


def _transform_value(value: Any) -> Any:
    """DSPy's treatment of non-JSON request values: model classes as schemas, models as data, callables by source."""
    import pydantic

    if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
        return value.model_json_schema()
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if callable(value):
        try:
            return f"<callable_source:{inspect.getsource(value)}>"
        except (TypeError, OSError):
            return f"<callable:{getattr(value, '__name__', 'lambda')}>"
    if isinstance(value, dict):
        return {k: _transform_value(v) for k, v in value.items()}
    return value


def request_cache(
    cache_arg_name: str | None = None,
    ignored_args_for_cache_key: list[str] | None = None,
    enable_memory_cache: bool = True,
    *,
    maxsize: int | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a function's results by its request argument (or all its kwargs), as DSPy's decorator does."""
    ignored = tuple(ignored_args_for_cache_key or IGNORED_KEY_ARGS)

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        identifier = f"{fn.__module__}.{fn.__qualname__}"

        def request_of(args: tuple, kwargs: dict) -> dict[str, Any]:
            if cache_arg_name:
                request = dict(kwargs[cache_arg_name])
            else:
                request = dict(kwargs)
                request.update({f"positional_arg_{i}": arg for i, arg in enumerate(args)})
            request["_fn_identifier"] = identifier
            return request

        def active_cache() -> Cache:
            import turbodspy

            return turbodspy.cache

        if inspect.iscoroutinefunction(fn):

            @wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                cache, request = active_cache(), copy.deepcopy(request_of(args, kwargs))
                cached = cache.get(request, ignored)
                if cached is not None:
                    return cached
                result = await fn(*args, **kwargs)
                cache.put(request, result, ignored, enable_memory_cache)
                return result

            return async_wrapper

        @wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            cache, request = active_cache(), copy.deepcopy(request_of(args, kwargs))
            cached = cache.get(request, ignored)
            if cached is not None:
                return cached
            result = fn(*args, **kwargs)
            cache.put(request, result, ignored, enable_memory_cache)
            return result

        return sync_wrapper

    return decorator


def configure_cache(
    enable_disk_cache: bool | None = True,
    enable_memory_cache: bool | None = True,
    disk_cache_dir: str | os.PathLike | None = None,
    disk_size_limit_bytes: int | None = None,
    memory_max_entries: int = 1_000_000,
    memory_max_bytes: int = DEFAULT_MEMORY_MAX_BYTES,
    restrict_pickle: bool | None = None,
    safe_types: list[type] | None = None,
) -> None:
    """Replace `turbodspy.cache` with a cache built from these settings (DSPy's names).

    The disk store defaults to `~/.turbodspy_cache` (`TURBODSPY_CACHEDIR`) with a 30 GB limit
    (`TURBODSPY_CACHE_LIMIT`); it is opened on first use, never here. `restrict_pickle` and `safe_types`
    are accepted for DSPy's callers and have nothing to do: no cache of ours holds pickles.
    """
    import turbodspy

    turbodspy.cache = Cache(
        enable_disk_cache=bool(enable_disk_cache),
        enable_memory_cache=bool(enable_memory_cache),
        disk_cache_dir=disk_cache_dir,
        disk_size_limit_bytes=disk_size_limit_bytes,
        memory_max_entries=memory_max_entries,
        memory_max_bytes=memory_max_bytes,
    )
