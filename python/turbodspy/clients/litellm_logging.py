"""LiteLLM's per-call success logging, skipped for calls that no LiteLLM callback, budget or debug log would see.

After every call LiteLLM builds a logging payload, prices the response a second time and runs its success
callbacks: on a thread pool for `completion`, as a task on the caller's event loop for `acompletion`. With nothing
registered to receive it, that work is invisible, yet it costs about as much CPU as the rest of the call's
bookkeeping and competes with the calls in flight. LiteLLM offers no setting for it; the one thing that skips it
is `litellm._internal_context.is_internal_call`, the context variable LiteLLM sets around its own nested calls.
turbodspy sets it for the length of one call, and only when nobody listens; a LiteLLM without it logs as before.
A user who registers a callback (`litellm.callbacks`, `litellm.success_callback`, ...), sets a budget, turns on
LiteLLM's debug log, or passes callbacks with the request gets LiteLLM's logging exactly as without turbodspy.
The response itself (usage, `_hidden_params["response_cost"]`) is built before logging, so history and cost are
the same either way.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

# Module-level lists LiteLLM reads callbacks from; any entry means someone listens.
_CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "input_callback",
    "service_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "_async_input_callback",
)
# Every `litellm.Cache()` adds this name to the lists, and LiteLLM builds one on its own the first time it loads
# its Gemini code. With no `litellm.cache` set nothing acts on it (older LiteLLMs filled the cache from it).
_CACHE_MARKER = "cache"
# Request arguments that register callbacks for one call, or bring the caller's own logging object.
_REQUEST_LISTENERS = ("callbacks", "success_callback", "failure_callback", "logger_fn", "litellm_logging_obj")


def internal_call_flag(litellm: Any) -> contextvars.ContextVar[bool] | None:
    """LiteLLM's `is_internal_call` switch, or None when this LiteLLM has none (then calls log as usual)."""
    try:
        from litellm._internal_context import is_internal_call
    except ImportError:
        return None
    return is_internal_call if isinstance(is_internal_call, contextvars.ContextVar) else None


def anyone_listens(litellm: Any, request: dict[str, Any]) -> bool:
    """Whether LiteLLM's logging of this call would reach anything: a callback, a budget, its debug log."""
    marker_is_inert = getattr(litellm, "cache", None) is None
    for name in _CALLBACK_LISTS:
        for callback in getattr(litellm, name, None) or ():
            if not (marker_is_inert and isinstance(callback, str) and callback == _CACHE_MARKER):
                return True
    if getattr(litellm, "max_budget", None):
        return True
    if any(request.get(name) is not None for name in _REQUEST_LISTENERS):
        return True
    # LiteLLM's debug log (`LITELLM_LOG=DEBUG`, `litellm._turn_on_debug()`, `set_verbose`) reports its logging.
    return getattr(litellm, "set_verbose", False) is True or _LITELLM_LOGGER.isEnabledFor(logging.DEBUG)


_LITELLM_LOGGER = logging.getLogger("LiteLLM")
