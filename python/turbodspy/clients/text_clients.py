"""OpenAI clients kept across `model_type="text"` calls, handed to LiteLLM through its `client` argument.

For legacy completions LiteLLM builds a new OpenAI client on every call, and with it a new connection pool and a
new TLS context (loading the CA bundle alone takes ~20 ms): each call opens a fresh connection. Chat calls do not
pay this, since LiteLLM caches their clients. Here the client LiteLLM would build is built once per (key, base
URL, timeout, HTTP session, event loop) and passed back in, so text calls reuse connections as chat calls do.
The client is built as LiteLLM builds it (its HTTP session settings, the timeout it resolves for the call); when
LiteLLM would fill in the key or base URL from its globals or the environment, it is left to build its own.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # asyncio loads with the first async call, not with `import turbodspy`
    import asyncio

# Distinct (key, base, timeout, ...) combinations kept per event loop (and for sync calls); the oldest goes first.
MAX_CLIENTS = 16

_lock = threading.Lock()
_sync_clients: OrderedDict[tuple, Any] = OrderedDict()
# Per event loop: an async client's connections belong to the loop that opened them.
_async_clients: dict[asyncio.AbstractEventLoop, OrderedDict[tuple, Any]] = {}


def client_for(litellm: Any, sent: dict[str, Any], asynchronous: bool) -> Any | None:
    """The pooled OpenAI client for this legacy-completions request, or None to let LiteLLM build one."""
    api_key, api_base = sent.get("api_key"), sent.get("api_base")
    if sent.get("client") is not None or not isinstance(api_key, str) or not api_key or not api_base:
        return None
    timeout = _timeout(litellm, sent)
    if timeout is None:
        return None
    session = litellm.aclient_session if asynchronous else litellm.client_session
    # The OpenAI client reads these from the environment when it is built; a change means a different client.
    environment = (os.environ.get("OPENAI_ORG_ID"), os.environ.get("OPENAI_PROJECT_ID"))
    key = (api_key, str(api_base), repr(timeout), id(session), environment)
    with _lock:
        if asynchronous:
            for closed in [loop for loop in _async_clients if loop.is_closed()]:
                del _async_clients[closed]  # its clients (which hold it) go with it
            import asyncio

            clients = _async_clients.setdefault(asyncio.get_running_loop(), OrderedDict())
        else:
            clients = _sync_clients
        client = clients.get(key)
        if client is None:
            try:
                client = _build(litellm, api_key, str(api_base), timeout, asynchronous)
            except (ImportError, AttributeError):  # a LiteLLM without these helpers builds its own, as before
                return None
            clients[key] = client
            while len(clients) > MAX_CLIENTS:
                clients.popitem(last=False)  # not closed: a call may still be using it; collected when done
        else:
            clients.move_to_end(key)
    return client


def _timeout(litellm: Any, sent: dict[str, Any]) -> Any:
    """The timeout LiteLLM would give the client it builds for this call (None when it cannot be known)."""
    try:
        from litellm.litellm_core_utils import completion_timeout
        from litellm.litellm_core_utils.request_timeout_resolver import get_configured_request_timeout

        supports_httpx_timeout = litellm.utils.supports_httpx_timeout
    except (ImportError, AttributeError):
        return None
    settings: dict[str, Any] = {
        "global_timeout": get_configured_request_timeout(),
        "supports_httpx_timeout": supports_httpx_timeout,
    }
    stream_kind = getattr(completion_timeout, "StreamKind", None)
    if stream_kind is not None:  # LiteLLM 1.110+ resolves stream timeouts too (OpenAI streams are live, not faked)
        settings["stream_kind"] = stream_kind.LIVE if sent.get("stream") else stream_kind.NOT_STREAMED
    try:
        return completion_timeout.CompletionTimeout.resolve(
            sent.get("timeout"), sent, "text-completion-openai", **settings
        )
    except (AttributeError, TypeError):  # a LiteLLM whose resolver asks for more: let it build its own client
        return None


def _build(litellm: Any, api_key: str, api_base: str, timeout: Any, asynchronous: bool) -> Any:
    import openai

    # max_retries=0: retries are turbodspy's own, as for every other call.
    if asynchronous:
        from litellm.llms.openai.common_utils import BaseOpenAILLM

        http_client = BaseOpenAILLM.get_async_http_client()
        return openai.AsyncOpenAI(
            api_key=api_key, base_url=api_base, http_client=http_client, timeout=timeout, max_retries=0
        )
    return openai.OpenAI(
        api_key=api_key, base_url=api_base, http_client=litellm.client_session, timeout=timeout, max_retries=0
    )
