"""Callbacks: `BaseCallback` handlers and the `with_callbacks` decorator that calls them around a method, as DSPy.

A decorated method looks up the callbacks in force (`settings.callbacks` first, then the instance's own
`callbacks` attribute). With none, it calls straight through; otherwise each callback's `on_<kind>_start` runs
before the method and `on_<kind>_end` after it (with the exception, if one was raised). Start and end share a
call id; `ACTIVE_CALL_ID` holds the id of the call in progress so nested calls can find their parent.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from turbodspy.settings import current

logger = logging.getLogger(__name__)

ACTIVE_CALL_ID: ContextVar[str | None] = ContextVar("turbodspy_active_call_id", default=None)

F = TypeVar("F", bound=Callable[..., Any])


class BaseCallback:
    """Subclass and override the handlers you need; set instances via `configure(callbacks=[...])` or `callbacks=`.

    Every `on_*_start(call_id, instance, inputs)` gets the call's arguments as a dict; every
    `on_*_end(call_id, outputs, exception)` gets the result, or None and the exception when the call raised.
    """

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Called when a module's `__call__`/`acall` starts."""

    def on_module_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """Called when a module's `__call__`/`acall` returns or raises."""

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Called when an LM's `__call__`/`acall` starts."""

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """Called when an LM's `__call__`/`acall` returns or raises."""

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Called when an adapter's `format` starts."""

    def on_adapter_format_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """Called when an adapter's `format` returns or raises."""

    def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Called when an adapter's `parse` starts."""

    def on_adapter_parse_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """Called when an adapter's `parse` returns or raises."""

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Called when a tool is invoked."""

    def on_tool_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """Called when a tool returns or raises."""

    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Called when an `Evaluate` run starts."""

    def on_evaluate_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """Called when an `Evaluate` run returns or raises."""

    def on_compile_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Called when an optimizer's `compile` starts."""

    def on_compile_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """Called when an optimizer's `compile` returns or raises."""


# Which handler family a class gets, decided once per class by the turbodspy base classes in its MRO. Matching by
# name keeps this module free of imports of the LM, adapter and evaluate layers (which import this module).
_KIND_BY_BASE = {
    "BaseLM": "lm",
    "Evaluate": "evaluate",
    "Adapter": "adapter",
    "Tool": "tool",
    "Teleprompter": "compile",
}
_kind_cache: dict[type, str] = {}


def _kind_of(instance: Any) -> str:
    cls = type(instance)
    kind = _kind_cache.get(cls)
    if kind is None:
        kind = "module"
        if getattr(instance, "supports_decision_requests", False) is True:
            kind = "lm"
        else:
            for base in cls.__mro__:
                if base.__module__.startswith(("turbodspy.", "dspy.")) and base.__name__ in _KIND_BY_BASE:
                    kind = _KIND_BY_BASE[base.__name__]
                    break
        _kind_cache[cls] = kind
    return kind


def _handler(callback: BaseCallback, instance: Any, fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
    kind = _kind_of(instance)
    if kind == "adapter":
        if fn.__name__ not in ("format", "parse"):
            raise ValueError(f"Unsupported adapter method for using callback: {fn.__name__}.")
        return getattr(callback, f"on_adapter_{fn.__name__}_{phase}")
    return getattr(callback, f"on_{kind}_{phase}")


def _active_callbacks(instance: Any) -> list[BaseCallback]:
    own = getattr(instance, "callbacks", None)
    configured = current().get("callbacks")
    if not own and not configured:
        return []
    return [*(configured or ()), *(own or ())]


def _start(instance: Any, fn: Callable[..., Any], call_id: str, callbacks: list, args: tuple, kwargs: dict) -> None:
    inputs = inspect.getcallargs(fn, instance, *args, **kwargs)
    if "self" in inputs:
        inputs.pop("self")
    elif "instance" in inputs:
        inputs.pop("instance")
    for callback in callbacks:
        try:
            _handler(callback, instance, fn, "start")(call_id=call_id, instance=instance, inputs=inputs)
        except Exception as e:  # a broken callback must not break the call it observes
            logger.warning(f"Error when calling callback {callback}: {e}")


def _end(instance: Any, fn: Callable[..., Any], call_id: str, results: Any, exception: Any, callbacks: list) -> None:
    for callback in callbacks:
        try:
            _handler(callback, instance, fn, "end")(call_id=call_id, outputs=results, exception=exception)
        except Exception as e:
            logger.warning(f"Error when applying callback {callback}'s end handler on function {fn.__name__}: {e}.")


def with_callbacks(fn: F) -> F:
    """Decorate an instance method (sync or async) so the active callbacks see its start and end."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
            callbacks = _active_callbacks(instance)
            if not callbacks:
                return await fn(instance, *args, **kwargs)
            call_id = uuid.uuid4().hex
            _start(instance, fn, call_id, callbacks, args, kwargs)
            # Set only now, so start handlers still see the parent's id as active.
            parent_call_id = ACTIVE_CALL_ID.get()
            ACTIVE_CALL_ID.set(call_id)
            results = exception = None
            try:
                results = await fn(instance, *args, **kwargs)
                return results
            except BaseException as e:
                exception = e
                raise
            finally:
                ACTIVE_CALL_ID.set(parent_call_id)
                _end(instance, fn, call_id, results, exception, callbacks)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def sync_wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
        callbacks = _active_callbacks(instance)
        if not callbacks:
            return fn(instance, *args, **kwargs)
        call_id = uuid.uuid4().hex
        _start(instance, fn, call_id, callbacks, args, kwargs)
        parent_call_id = ACTIVE_CALL_ID.get()
        ACTIVE_CALL_ID.set(call_id)
        results = exception = None
        try:
            results = fn(instance, *args, **kwargs)
            return results
        except BaseException as e:
            exception = e
            raise
        finally:
            ACTIVE_CALL_ID.set(parent_call_id)
            _end(instance, fn, call_id, results, exception, callbacks)

    return sync_wrapper  # type: ignore[return-value]
