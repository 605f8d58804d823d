"""Token usage per LM: `UsageTracker` collects the usage each LM call reports; `track_usage()` scopes one.

The LM layer calls `settings.usage_tracker.add_usage(model, usage)` for every call that was not a cache hit.
`Module.__call__` opens a tracker per top-level call when `configure(track_usage=True)`, and the prediction
gets the totals via `get_lm_usage()`.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from turbodspy.settings import settings


class UsageTracker:
    """Usage entries per LM name, e.g. `{"openai/gpt-4o-mini": [{"prompt_tokens": 10, ...}, ...]}`."""

    def __init__(self) -> None:
        self.usage_data: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        """Record one call's usage for `lm`; empty entries are ignored."""
        if usage_entry:
            entry = {k: _plain(v) for k, v in usage_entry.items()}
            with self._lock:
                self.usage_data[lm].append(entry)

    def get_total_tokens(self) -> dict[str, dict[str, Any]]:
        """Sum the entries of each LM: counts add up, nested dicts merge, other values keep the first seen."""
        with self._lock:
            snapshot = {lm: list(entries) for lm, entries in self.usage_data.items()}
        totals: dict[str, dict[str, Any]] = {}
        for lm, entries in snapshot.items():
            total: dict[str, Any] = {}
            for entry in entries:
                total = _merge(total, entry)
            totals[lm] = total
        return totals

    def __deepcopy__(self, memo: dict) -> UsageTracker:
        copy = UsageTracker()
        with self._lock:
            for lm, entries in self.usage_data.items():
                copy.usage_data[lm] = [dict(e) for e in entries]
        return copy


def _plain(value: Any) -> Any:
    """Pydantic models (LiteLLM's token-detail wrappers) become dicts so entries merge and serialise."""
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else value


def _summable(value: Any) -> bool:
    # Flags such as `is_byok` are bools, and a bool is an int: never add those up.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _merge(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    if not a:
        return dict(b or {})
    if not b:
        return dict(a)
    result = dict(a)
    for key, value in b.items():
        current = result.get(key)
        if isinstance(value, dict) or isinstance(current, dict):
            result[key] = _merge(current, value)
        elif current is None:
            if value is not None:
                result[key] = value
        elif _summable(current) and _summable(value):
            result[key] = current + value
    return result


@contextmanager
def track_usage() -> Iterator[UsageTracker]:
    """Collect the usage of every LM call inside the block; a nested tracker rolls its entries up on exit."""
    tracker = UsageTracker()
    parent = settings.usage_tracker
    with settings.context(usage_tracker=tracker):
        try:
            yield tracker
        finally:
            if parent is not None:
                for lm, entries in tracker.usage_data.items():
                    for entry in entries:
                        parent.add_usage(lm, entry)
