"""`BaseLM`: the call path every language model shares: kwargs merge, cache, single flight, history, usage.

A subclass implements `forward(prompt=None, messages=None, **kwargs)` returning an OpenAI-shaped response and
gets caching and history for free. A cache hit never leaves this module: it costs one request key (Rust), one
dictionary lookup and one history entry.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import warnings
from typing import TYPE_CHECKING, Any, TextIO

import turbodspy as _package
from turbodspy import _core
from turbodspy.clients import single_flight
from turbodspy.clients.cache import IGNORED_KEY_ARGS, CacheEntry, kept_outputs
from turbodspy.clients.history import CallHistory, pretty_print_history, record_history, timestamp
from turbodspy.clients.response import CachedResponse, get_field, response_to_data
from turbodspy.clients.secrets import without_credentials
from turbodspy.settings import current as current_settings
from turbodspy.settings import current_overrides, global_config

if hasattr(os, "register_at_fork"):  # history ids of a forked child must not repeat its parent's
    os.register_at_fork(after_in_child=_core.call_ids_after_fork)

if TYPE_CHECKING:
    from concurrent.futures import Future

LM_CLASS_STATE_KEY = "_dspy_lm_class"
_BUILTIN_LM_CLASS_PATH = "dspy.clients.lm.LM"


class BaseLM:
    """Base class of language models, with DSPy 3.4.1's constructor, call signature, history and state."""

    def __init__(
        self,
        model: str,
        model_type: str = "chat",
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: bool = True,
        callbacks: list[Any] | None = None,
        num_retries: int = 3,
        **kwargs: Any,
    ):
        self.model = model
        self.model_type = model_type
        self.cache = cache
        self.callbacks = list(callbacks or [])
        self.num_retries = num_retries
        self.kwargs = self._get_initial_kwargs(temperature=temperature, max_tokens=max_tokens, **kwargs)
        self.history = CallHistory(maxlen=current_settings()["max_history_size"] or None)
        self._warned_zero_temp_rollout = False

    def _get_initial_kwargs(self, *, temperature: Any, max_tokens: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(temperature=temperature, max_tokens=max_tokens, **kwargs)

    # -- capabilities (overridden by LM) ------------------------------------------------------------------------

    @property
    def supports_function_calling(self) -> bool:
        return False

    @property
    def supports_reasoning(self) -> bool:
        return False

    @property
    def supports_response_schema(self) -> bool:
        return False

    @property
    def supported_params(self) -> set[str]:
        return set()

    # -- calling ------------------------------------------------------------------------------------------------

    def __call__(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> list:
        """Call the LM with a prompt or a list of messages; returns the list of outputs (one per choice)."""
        config = current_overrides() or global_config
        if self.callbacks or config["callbacks"]:
            return self._call_observed(prompt, messages=messages, **kwargs)
        return self._call(prompt, messages, kwargs, config)

    async def acall(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list:
        """Async `__call__`: the provider is called through LiteLLM's async client."""
        config = current_settings()
        if self.callbacks or config["callbacks"]:
            return await self._acall_observed(prompt, messages=messages, **kwargs)
        return await self._acall(prompt, messages, kwargs, config)

    # Callbacks see these (on_lm_start/end); calls without callbacks skip the wrapper entirely.
    def _call_observed(self, prompt: str | None = None, messages: list | None = None, **kwargs: Any) -> list:
        return _observed(BaseLM._call_observed_body)(self, prompt, messages=messages, **kwargs)

    async def _acall_observed(self, prompt: str | None = None, messages: list | None = None, **kwargs: Any) -> list:
        return await _observed(BaseLM._acall_observed_body)(self, prompt, messages=messages, **kwargs)

    def _call_observed_body(self, prompt: str | None = None, messages: list | None = None, **kwargs: Any) -> list:
        return self._call(prompt, messages, kwargs, current_settings())

    async def _acall_observed_body(
        self, prompt: str | None = None, messages: list | None = None, **kwargs: Any
    ) -> list:
        return await self._acall(prompt, messages, kwargs, current_settings())

    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        """Return an OpenAI-shaped response for the call. Subclasses implement this."""
        raise NotImplementedError("Subclasses of BaseLM must implement forward(prompt=None, messages=None, **kwargs)")

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        """Async `forward`; by default runs `forward` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.forward, prompt=prompt, messages=messages, **kwargs)

    def _call(self, prompt: Any, messages: Any, kwargs: dict[str, Any], config: dict[str, Any]) -> list:
        merged, request, cache, key = self._prepare(prompt, messages, kwargs, asynchronous=False)
        if cache is not None:
            entry = cache.lookup(key)
            if entry is not None:
                return self._finish_hit(prompt, messages, kwargs, merged, entry, config)
            if request is None:  # keyed from the prompt alone: key the request it sends, as it is built now
                merged, request, cache, key = self._prepare_request(prompt, messages, kwargs, asynchronous=False)
        call = PreparedCall(prompt, messages, kwargs, merged, request, cache, key)
        if cache is None:
            return self._finish(call, self._fetch(call), None, config)
        leader, future = single_flight.claim(key)
        if not leader:
            return self._finish_waiter(call, future.result(), config)
        try:
            return self._finish(call, self._fetch(call), future, config)
        finally:
            single_flight.release(key, future)

    async def _acall(self, prompt: Any, messages: Any, kwargs: dict[str, Any], config: dict[str, Any]) -> list:
        merged, request, cache, key = self._prepare(prompt, messages, kwargs, asynchronous=True)
        if cache is not None:
            entry = cache.lookup(key)
            if entry is not None:
                return self._finish_hit(prompt, messages, kwargs, merged, entry, config)
            if request is None:  # keyed from the prompt alone: key the request it sends, as it is built now
                merged, request, cache, key = self._prepare_request(prompt, messages, kwargs, asynchronous=True)
        call = PreparedCall(prompt, messages, kwargs, merged, request, cache, key)
        if cache is None:
            return self._finish(call, await self._afetch(call), None, config)
        leader, future = single_flight.claim(key)
        if not leader:
            return self._finish_waiter(call, await single_flight.wait(future), config)
        try:
            return self._finish(call, await self._afetch(call), future, config)
        finally:
            single_flight.release(key, future)

    def _prepare(self, prompt: Any, messages: Any, kwargs: dict[str, Any], asynchronous: bool) -> tuple:
        """(merged kwargs, request or None, cache or None, key or None) for a call. A call without kwargs is
        keyed from its prompt or messages alone (`_core.RequestKeyer`), its request left to a miss (None); any
        other call is prepared by `_prepare_request`."""
        if not kwargs and self.cache and not self.use_developer_role:
            cache = _package.cache
            if cache.enabled:  # an attribute, not a property: this is the hot path
                model, model_type, lm_kwargs = self.model, self.model_type, self.kwargs
                try:
                    key = self._keyer.key(model, model_type, lm_kwargs, prompt, messages, asynchronous)
                    if key is None:  # the first call, or the LM's model or kwargs changed since the last
                        key = self._new_keyer().key(model, model_type, lm_kwargs, prompt, messages, asynchronous)
                except UnicodeEncodeError:
                    raise _not_unicode(messages) from None
                except _core.UnsupportedValueError:
                    key = ""  # messages that are not data: the general path gives them DSPy's treatment
                if key:  # "": only the general path keys this LM's calls
                    return lm_kwargs, None, cache, key
        return self._prepare_request(prompt, messages, kwargs, asynchronous)

    def _new_keyer(self) -> Any:
        # An identifier of a subclass's own may depend on anything: only the built-in ones are written ahead.
        identifiers = None
        if type(self)._cache_identifier in BUILTIN_CACHE_IDENTIFIERS:
            identifiers = (self._cache_identifier(False), self._cache_identifier(True))
        keyer = self._keyer = _core.RequestKeyer(
            self.model, self.model_type, self.kwargs, IGNORED_KEY_ARGS, identifiers
        )
        return keyer

    # Holds nothing, so an LM's first call builds its own; copies share it, pickles hold none.
    _keyer: Any = _core.RequestKeyer()

    def _prepare_request(self, prompt: Any, messages: Any, kwargs: dict[str, Any], asynchronous: bool) -> tuple:
        """`_prepare` for any call: builds the request and keys it whole."""
        if kwargs:
            use_cache = kwargs.get("cache", self.cache)
            merged = {**self.kwargs, **kwargs}
            if "cache" in kwargs:
                del merged["cache"]
        else:  # nothing to merge: the LM's own kwargs, only ever read from here on
            use_cache, merged = self.cache, self.kwargs
        if "rollout_id" in merged:
            if merged["rollout_id"] is None:
                merged = {k: v for k, v in merged.items() if k != "rollout_id"}
            else:
                self._warn_zero_temp_rollout(merged.get("temperature"), merged["rollout_id"])
        request = self._request(prompt, messages, merged)
        if use_cache:
            cache = _package.cache
            if cache.enabled:
                identifier = self._cache_identifier(asynchronous)
                try:
                    return merged, request, cache, _core.request_key(request, IGNORED_KEY_ARGS, identifier)
                except UnicodeEncodeError:
                    raise _not_unicode(messages) from None
                except _core.UnsupportedValueError:
                    try:  # pydantic models and callables get DSPy's treatment first
                        return merged, request, cache, cache.cache_key(request, IGNORED_KEY_ARGS, identifier)
                    except (TypeError, ValueError):
                        pass  # a request that is not data goes uncached, as in DSPy
        return merged, request, None, None

    def _request(self, prompt: Any, messages: Any, merged: dict[str, Any]) -> dict[str, Any]:
        rendered = messages or [{"role": "user", "content": prompt}]
        if self.use_developer_role:
            rendered = self._rendered_messages(rendered)
        return {"model": self.model, "messages": rendered, **merged}

    # An LM that sends system messages under another role rewrites them before the key is computed.
    use_developer_role = False

    def _rendered_messages(self, messages: list) -> list:
        return messages

    def _cache_identifier(self, asynchronous: bool) -> str:
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}.{'aforward' if asynchronous else 'forward'}"

    def _fetch(self, call: PreparedCall) -> Any:
        return self.forward(prompt=call.prompt, messages=call.messages, **call.forward_kwargs())

    async def _afetch(self, call: PreparedCall) -> Any:
        return await self.aforward(prompt=call.prompt, messages=call.messages, **call.forward_kwargs())

    def _finish(self, call: PreparedCall, response: Any, future: Future | None, config: dict[str, Any]) -> list:
        """A fresh response: extract outputs, cache it, record usage and history."""
        outputs = self._outputs(response, call.merged)
        usage = dict(get_field(response, "usage", None) or {})
        cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        if future is not None:
            single_flight.release(call.key, future, self._store(call, response, usage, cost, outputs))
        if config["usage_tracker"] is not None:  # set by track_usage() or configure(track_usage=True)
            config["usage_tracker"].add_usage(self.model, usage)
        if not config["disable_history"]:
            model = get_field(response, "model", None)
            self._record(call.prompt, call.messages, call.kwargs, response, model, outputs, usage, cost, config)
        return _copy_outputs(outputs)

    def _store(self, call: PreparedCall, response: Any, usage: dict, cost: Any, outputs: list) -> CacheEntry | None:
        try:
            data = response_to_data(response)
        except (TypeError, ValueError):
            return None  # not data, so not cacheable; the caller still gets its answer
        # The outputs a hit returns are kept beside the response (as DSPy keeps them), so a hit read from disk
        # decodes only them; the response is decoded when someone looks at it.
        record = {  # what a hit reads first, first: a reader stops once it has found those members
            "outputs": kept_outputs(self._outputs(data, call.merged), data),
            "cost": cost,
            "response_model": data.get("model"),
            "model": self.model,
            "response": data,  # before usage: a hit may read the message text from it
            "usage": _plain_usage(usage),
        }
        entry = call.cache.store(call.key, record)
        entry.derived = _derived(CachedResponse(data, cost), data.get("model"), cost, outputs)
        return entry

    def _finish_waiter(self, call: PreparedCall, entry: CacheEntry | None, config: dict[str, Any]) -> list:
        """Another caller fetched this request while we waited: its entry is our cache hit."""
        if entry is None:  # the leader failed, or its response could not be cached: ask for ourselves
            return self._finish(call, self._fetch(call), None, config)
        return self._finish_hit(call.prompt, call.messages, call.kwargs, call.merged, entry, config)

    def _finish_hit(
        self, prompt: Any, messages: Any, kwargs: dict, merged: dict, entry: CacheEntry, config: dict[str, Any]
    ) -> list:
        derived = entry.derived
        if derived is None:
            derived = entry.derived = self._derive(entry, merged)
        response, response_model, cost, outputs, needs_copies = derived
        if not config["disable_history"]:
            history_outputs = _copy_outputs(outputs) if needs_copies else outputs
            self._record(prompt, messages, kwargs, response, response_model, history_outputs, {}, cost, config)
        return _copy_outputs(outputs) if needs_copies else list(outputs)

    def _derive(self, entry: CacheEntry, merged: dict) -> tuple:
        """What every hit on `entry` hands out (see `_derived`), worked out by its first hit."""
        leading = entry.leading
        if leading is not None:
            outputs, cost, response_model = leading
            if type(outputs) is tuple:  # the message texts (str or None): immutable, shared as they are
                return (CachedResponse(None, cost, entry.stored), response_model, cost, outputs, False)
            if type(outputs) is list:  # records written before outputs were kept lack them
                return _derived(CachedResponse(None, cost, entry.stored), response_model, cost, outputs)
        record = entry.record
        data, cost = record["response"], record.get("cost")
        # Outputs from the plain data, not through the view.
        return _derived(CachedResponse(data, cost), data.get("model"), cost, self._outputs(data, merged))

    def _record(
        self,
        prompt: Any,
        messages: Any,
        kwargs: dict,
        response: Any,
        response_model: Any,
        outputs: Any,
        usage: dict,
        cost: Any,
        config: dict,
    ) -> None:
        if kwargs:  # as DSPy, history leaves out every api_* argument; credential headers go too
            kwargs = without_credentials({k: v for k, v in kwargs.items() if not k.startswith("api_")})
        entry = {
            "prompt": prompt,
            "messages": messages,
            "kwargs": kwargs,
            "response": response,
            "outputs": list(outputs),
            "usage": usage,
            "cost": cost,
            "timestamp": timestamp(),
            "uuid": _core.call_id(),
            "model": self.model,
            "response_model": response_model,
            "model_type": self.model_type,
        }
        record_history(self, entry, config)

    def _warn_zero_temp_rollout(self, temperature: Any, rollout_id: Any) -> None:
        if not self._warned_zero_temp_rollout and rollout_id is not None and temperature == 0:
            warnings.warn(
                "rollout_id has no effect when temperature=0; set temperature>0 to bypass the cache.", stacklevel=4
            )
            self._warned_zero_temp_rollout = True

    # -- outputs ------------------------------------------------------------------------------------------------

    def _outputs(self, response: Any, merged: dict[str, Any]) -> list:
        if self.model_type == "responses":
            return _responses_outputs(response)
        return _completion_outputs(response, merged)

    # -- history, copies and state ------------------------------------------------------------------------------

    def inspect_history(self, n: int = 1, file: TextIO | None = None) -> None:
        pretty_print_history(self.history, n, file=file)

    def update_history(self, entry: dict[str, Any]) -> None:
        record_history(self, entry)

    def copy(self, **kwargs: Any) -> BaseLM:
        """A copy with its own history, callbacks list and kwargs; `kwargs` update attributes or request kwargs."""
        new = copy.copy(self)
        new.history = CallHistory(maxlen=current_settings()["max_history_size"] or None)
        new.callbacks = list(self.callbacks)
        new.kwargs = dict(self.kwargs)
        for key, value in kwargs.items():
            if hasattr(new, key):
                setattr(new, key, value)
            if key in new.kwargs or not hasattr(self, key):
                if value is None:
                    new.kwargs.pop(key, None)
                else:
                    new.kwargs[key] = value
        new._warned_zero_temp_rollout = False
        return new

    def dump_state(self) -> dict[str, Any]:
        """The LM's settings as data (no API key, no credential headers), for `load_state` and saved programs."""
        kwargs = {k: v for k, v in without_credentials(self.kwargs).items() if k != LM_CLASS_STATE_KEY}
        return {
            LM_CLASS_STATE_KEY: _state_class_path(type(self)),
            "model": self.model,
            "model_type": self.model_type,
            "cache": self.cache,
            "num_retries": self.num_retries,
            **kwargs,
        }

    @classmethod
    def load_state(cls, state: dict[str, Any], *, allow_custom_lm_class: bool = False) -> BaseLM:
        """Rebuild an LM from `dump_state()`. Custom LM classes load only with `allow_custom_lm_class=True`."""
        state = dict(state)
        class_path = state.pop(LM_CLASS_STATE_KEY, None)
        if cls is not BaseLM:
            return cls(**state)
        from turbodspy.clients.lm import LM

        if class_path in (None, _BUILTIN_LM_CLASS_PATH, f"{LM.__module__}.{LM.__qualname__}"):
            return LM(**state)
        if not allow_custom_lm_class:
            raise ValueError(
                f"Refusing to import custom serialized LM class `{class_path}`. "
                "Pass allow_custom_lm_class=True when loading trusted state to enable custom LM classes."
            )
        lm_class = _import_class(class_path)
        if not issubclass(lm_class, BaseLM):
            raise TypeError(f"Serialized LM class `{class_path}` must be a subclass of turbodspy.BaseLM.")
        if "allow_custom_lm_class" in inspect.signature(lm_class.load_state).parameters:
            return lm_class.load_state(state, allow_custom_lm_class=allow_custom_lm_class)
        return lm_class.load_state(state)


# `_cache_identifier` implementations that depend only on the class, `model_type` and state fixed at construction
# (the request keyer checks model_type): `turbodspy.clients.lm` adds LM's.
BUILTIN_CACHE_IDENTIFIERS = {BaseLM._cache_identifier}


def _not_unicode(messages: Any) -> ValueError:
    return ValueError(
        f"The {'messages' if messages else 'prompt'} contain text that is not valid Unicode (a lone "
        "surrogate), which no provider can receive; repair the text first, e.g. "
        "text.encode('utf-8', 'replace').decode('utf-8')"
    )


def _state_class_path(cls: type) -> str:
    """Our own LM is saved under DSPy's name, so programs saved by either library load in the other."""
    from turbodspy.clients.lm import LM

    return _BUILTIN_LM_CLASS_PATH if cls is LM else f"{cls.__module__}.{cls.__qualname__}"


def _import_class(path: str) -> type:
    """The class at a dotted path whose module part may be any prefix (`pkg.mod.Outer.Inner`)."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        try:
            for name in parts[split:]:
                obj = getattr(obj, name)
        except AttributeError:
            continue
        if isinstance(obj, type):
            return obj
        raise TypeError(f"Serialized LM class `{path}` is not a class.")
    raise ImportError(f"Could not import serialized LM class `{path}`.")


_observed_cache: dict[Any, Any] = {}


def _observed(fn: Any) -> Any:
    """`fn` wrapped by the callback machinery, which loads only once some caller registers a callback."""
    wrapped = _observed_cache.get(fn)
    if wrapped is None:
        from turbodspy.utils.callback import with_callbacks

        wrapped = _observed_cache[fn] = with_callbacks(fn)
    return wrapped


def _derived(response: CachedResponse, response_model: Any, cost: Any, outputs: list) -> tuple:
    """What a cache hit hands out, computed once per entry: `(response view, its model, cost, outputs, whether
    the outputs need copies)`. A tuple, not an object: the first hit on each entry builds one."""
    # Its own copies: the first caller's outputs and history entry must not share objects with the cache.
    for output in outputs:
        if type(output) is not str:
            return (response, response_model, cost, tuple(_copy_outputs(outputs)), True)
    return (response, response_model, cost, tuple(outputs), False)


class PreparedCall:
    """One call's inputs, merged kwargs, request and (when cached) key."""

    __slots__ = ("cache", "key", "kwargs", "merged", "messages", "prompt", "request")

    def __init__(self, prompt: Any, messages: Any, kwargs: dict, merged: dict, request: dict, cache: Any, key: Any):
        self.prompt = prompt
        self.messages = messages
        self.kwargs = kwargs
        self.merged = merged
        self.request = request
        self.cache = cache
        self.key = key

    def forward_kwargs(self) -> dict:
        """The call's kwargs for `forward`: `cache` is ours, not the model's."""
        return {k: v for k, v in self.kwargs.items() if k != "cache"}


def _plain_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Usage as data: LiteLLM nests SDK objects (token details) inside it."""
    plain = {}
    for key, value in usage.items():
        if hasattr(value, "model_dump"):
            value = value.model_dump()
        if isinstance(value, (int, float, str, bool, dict, list)) or value is None:
            plain[key] = value
    return plain


def _copy_outputs(outputs: Any) -> list:
    """The caller's own list; dict outputs (tool calls, logprobs) are deep copies, so nobody can edit the cache."""
    return [copy.deepcopy(o) if isinstance(o, dict) else o for o in outputs]


def _completion_outputs(response: Any, merged: dict[str, Any]) -> list:
    outputs = []
    for choice in get_field(response, "choices", None) or []:
        message = get_field(choice, "message", None)
        # Chat choices carry a message; legacy completion choices carry text.
        output: dict[str, Any] = {
            "text": get_field(message, "content") if message is not None else get_field(choice, "text")
        }
        if message is not None and (reasoning := get_field(message, "reasoning_content")):
            output["reasoning_content"] = reasoning
        if merged.get("logprobs"):
            output["logprobs"] = _plain(get_field(choice, "logprobs"))
        if message is not None and (calls := get_field(message, "tool_calls")):
            output["tool_calls"] = _plain(calls)
        if message is not None and (citations := _citations(message)):
            output["citations"] = citations
        outputs.append(output)
    if all(len(output) == 1 for output in outputs):
        return [output["text"] for output in outputs]
    return outputs


def _citations(message: Any) -> list | None:
    fields = get_field(message, "provider_specific_fields", None) or {}
    groups = get_field(fields, "citations", None) if fields else None
    if not isinstance(groups, list):
        return None
    return [c for group in groups for c in (group if isinstance(group, list) else [group])]


def _responses_outputs(response: Any) -> list:
    texts, reasoning, calls = [], [], []
    for item in get_field(response, "output", None) or []:
        kind = get_field(item, "type")
        if kind == "message":
            for part in get_field(item, "content", None) or []:
                if get_field(part, "type") in ("text", "output_text", "input_text"):
                    text = get_field(part, "text")
                    if text is not None:
                        texts.append(text)
        elif kind == "function_call":
            call = {
                "type": "function",
                "function": {"name": get_field(item, "name", ""), "arguments": get_field(item, "arguments", "{}")},
            }
            if get_field(item, "call_id") is not None:
                call["id"] = get_field(item, "call_id")
            calls.append(call)
        elif kind == "reasoning":
            for part in get_field(item, "content", None) or get_field(item, "summary", None) or []:
                if text := get_field(part, "text"):
                    reasoning.append(text)
    output: dict[str, Any] = {"text": "".join(texts) if texts else None}
    if reasoning:
        output["reasoning_content"] = "".join(reasoning)
    if calls:
        output["tool_calls"] = calls
    return [output]


def _plain(value: Any) -> Any:
    """SDK objects (LiteLLM's pydantic models, our views) as plain data."""
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
