"""Process-wide settings (`configure`) and per-thread, per-task overrides (`context`), as in DSPy.

`configure` belongs to the first thread (and asyncio task) that calls it; every other thread or task uses
`context`, whose overrides live in a ContextVar, so they are isolated per thread and per task and travel into
workers that copy the context (`Parallel`, `asyncify`).
"""

from __future__ import annotations

import contextvars
import sys
import threading
from typing import Any

DEFAULT_CONFIG: dict[str, Any] = {
    "lm": None,
    "adapter": None,
    "rm": None,
    "branch_idx": 0,
    "trace": [],
    "callbacks": [],
    "async_max_workers": 8,
    "send_stream": None,
    "disable_history": False,
    "track_usage": False,
    "usage_tracker": None,
    "caller_predict": None,
    "caller_modules": None,
    "stream_listeners": [],
    "provide_traceback": False,
    "num_threads": 8,
    "max_errors": 10,
    "allow_tool_async_sync_conversion": False,
    "max_history_size": 10_000,
    "max_trace_size": 10_000,
    "warn_on_type_mismatch": True,
    "interpreter_factory": None,
}

_MISSING = object()

# Inside a `context` block: the complete effective settings (the global ones when the block was entered, plus its
# overrides), so a read is one dictionary lookup. None outside any block: the global settings apply.
_overrides: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("turbodspy_overrides", default=None)


class Settings:
    """The singleton behind `turbodspy.settings`: attribute reads see the innermost `context`, then `configure`."""

    _instance: Settings | None = None

    def __new__(cls) -> Settings:
        if cls._instance is None:
            instance = super().__new__(cls)
            object.__setattr__(instance, "_config", {k: _fresh(v) for k, v in DEFAULT_CONFIG.items()})
            object.__setattr__(instance, "_lock", threading.Lock())  # `settings.lock`, for users' own code
            object.__setattr__(instance, "_configure_lock", threading.Lock())
            object.__setattr__(instance, "_owner_thread", None)
            object.__setattr__(instance, "_owner_task", None)
            cls._instance = instance
        return cls._instance

    def __getattr__(self, name: str) -> Any:
        value = (_overrides.get() or self._config).get(name, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"'Settings' object has no attribute '{name}'")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        self.configure(**{name: value})

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.configure(**{name: value})

    def __contains__(self, name: str) -> bool:
        return name in (_overrides.get() or self._config)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self.__getattr__(name)
        except AttributeError:
            return default

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def copy(self) -> dict[str, Any]:
        return dict(_overrides.get() or self._config)

    @property
    def config(self) -> dict[str, Any]:
        return self.copy()

    def configure(self, **kwargs: Any) -> None:
        """Set process-wide defaults. Only the thread (and asyncio task) that first called it may call it again."""
        with self._configure_lock:
            self._claim_ownership()
            self._config.update(kwargs)

    def context(self, **kwargs: Any) -> SettingsContext:
        """Override settings inside a `with` block, for this thread or task only; restored on exit."""
        return SettingsContext(**kwargs)

    def _claim_ownership(self) -> None:
        thread = threading.get_ident()
        if self._owner_thread is None:
            object.__setattr__(self, "_owner_thread", thread)
        elif self._owner_thread != thread:
            raise RuntimeError(
                "turbodspy.configure(...) can only be called from the thread that first called it. "
                "Use `turbodspy.context(...)` in other threads instead."
            )
        # asyncio is imported lazily: if nobody imported it, no task can be running.
        asyncio = sys.modules.get("asyncio")
        try:
            task = asyncio.current_task() if asyncio is not None else None
        except RuntimeError:
            task = None
        if task is None:
            return
        if self._owner_task is None:
            object.__setattr__(self, "_owner_task", task)
        elif self._owner_task is not task and not _in_ipython():
            raise RuntimeError(
                "turbodspy.configure(...) can only be called from the async task that first called it. "
                "Use `turbodspy.context(...)` in other async tasks instead."
            )

    def __repr__(self) -> str:
        return repr(self.copy())


class SettingsContext:
    """`context(**overrides)`: override settings inside a `with` block, for this thread or task only; restored on
    exit. A plain context manager (no generator), as programs enter one per call."""

    __slots__ = ("_overrides", "_token")

    def __init__(self, **overrides: Any):
        self._overrides = overrides
        self._token: contextvars.Token | None = None

    def __enter__(self) -> None:
        self._token = _overrides.set({**(_overrides.get() or settings._config), **self._overrides})

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        _overrides.reset(self._token)


def _in_ipython() -> bool:
    """IPython runs each cell as its own task: `configure` stays allowed there, as in DSPy."""
    ipython = sys.modules.get("IPython")
    try:
        return ipython is not None and ipython.get_ipython() is not None
    except Exception:
        return False


def _fresh(value: Any) -> Any:
    """Defaults that are mutable containers get their own copy, so they are never shared with DEFAULT_CONFIG."""
    return type(value)() if isinstance(value, (list, dict)) else value


settings = Settings()
configure = settings.configure
context = SettingsContext  # what `settings.context` returns, without the extra call


def current() -> dict[str, Any]:
    """The effective settings of this thread or task, as a dict to read (never to modify). For hot paths."""
    return _overrides.get() or settings._config


# For the hottest paths, which inline `current()`: `current_overrides() or global_config`.
current_overrides = _overrides.get
global_config = settings._config
