"""Provider calls through LiteLLM: one attempt per call to LiteLLM, our own retries, errors mapped to `LMError`s.

LiteLLM is imported on the first provider call, never before, with its model-cost map read locally so it never
reaches for the network on import. Retries cover rate limits, 5xx and connection failures with exponential
backoff that honours the provider's `Retry-After`. LiteLLM's global settings stay the user's: calls only skip
its per-call success logging when nothing would receive it (see `litellm_logging`).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from turbodspy import errors
from turbodspy.clients import litellm_logging, text_clients

# Backoff: BASE * 2**attempt seconds with jitter, capped; a provider's Retry-After wins when it is longer.
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0

_litellm: Any = None
_litellm_lock = threading.Lock()
_unlogged: Any = None  # LiteLLM's is_internal_call context variable, when it has one


def load_litellm() -> Any:
    """Import LiteLLM once, quietly and offline."""
    global _litellm, _unlogged
    if _litellm is None:
        with _litellm_lock:
            if _litellm is None:
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                import litellm

                # Its "Give Feedback / Get Help" banner on every error; our errors say what to do instead.
                litellm.suppress_debug_info = True
                if hasattr(litellm, "telemetry"):  # older LiteLLMs (turbodspy takes >= 1.60) still report usage
                    litellm.telemetry = False
                _unlogged = litellm_logging.internal_call_flag(litellm)
                _litellm = litellm
    return _litellm


def provider_of(model: str) -> str:
    """The provider prefix of a model string ('openai' when there is none, as LiteLLM assumes)."""
    prefix, slash, _ = model.partition("/")
    return prefix if slash else "openai"


def prepare_provider_request(request: dict[str, Any], user_agent: str) -> dict[str, Any]:
    """What LiteLLM receives: the request without our bookkeeping, with an identifying User-Agent."""
    sent = {k: v for k, v in request.items() if k != "rollout_id"}
    sent["headers"] = {"User-Agent": user_agent, **(sent.pop("headers", None) or {})}
    if not sent.get("api_key") and _needs_no_key(sent):
        # A local server (SGLang, vLLM, Ollama) takes no key, but OpenAI's client refuses to send none.
        sent["api_key"] = "no-key"
    return sent


def _needs_no_key(request: dict[str, Any]) -> bool:
    """An explicit empty key with an api_base, or no key at all for a server on this machine."""
    base = request.get("api_base") or request.get("base_url")
    if not base:
        return False
    if request.get("api_key") == "":
        return True
    if os.getenv(f"{provider_of(request['model']).upper()}_API_KEY"):
        return False
    from urllib.parse import urlparse

    host = urlparse(base).hostname or ""
    return host in ("localhost", "::1", "0.0.0.0") or host.startswith("127.")


def chat_to_text_request(request: dict[str, Any]) -> dict[str, Any]:
    """A chat request as a legacy completions request: the messages joined into one prompt, as DSPy sends it."""
    sent = dict(request)
    model = sent.pop("model")
    provider, _, name = model.rpartition("/")
    provider = provider or "openai"
    sent["api_key"] = sent.get("api_key") or os.getenv(f"{provider}_API_KEY")
    sent["api_base"] = sent.get("api_base") or os.getenv(f"{provider}_API_BASE")
    contents = [m["content"] for m in sent.pop("messages")]
    sent["prompt"] = "\n\n".join([*contents, "BEGIN RESPONSE:"])
    sent["model"] = f"text-completion-openai/{name}"
    return sent


def chat_to_responses_request(request: dict[str, Any]) -> dict[str, Any]:
    """A chat request for the Responses API: messages become `input`, max_tokens becomes max_output_tokens."""
    sent = dict(request)
    if "input" not in sent:
        items = []
        for message in sent.pop("messages"):
            content = message.get("content")
            if isinstance(content, str):
                parts = [{"type": "input_text", "text": content}]
            else:
                parts = [_responses_part(part) for part in content or []]
            items.append({"role": message["role"], "content": parts})
        sent["input"] = items
    else:
        sent.pop("messages", None)
    for old in ("max_tokens", "max_completion_tokens"):
        if old in sent:
            value = sent.pop(old)
            if value is not None:
                sent["max_output_tokens"] = value
    return sent


def _responses_part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "text":
        return {"type": "input_text", "text": part["text"]}
    if part.get("type") == "image_url":
        return {"type": "input_image", "image_url": part["image_url"]["url"]}
    return part


def _entry_points(model_type: str, asynchronous: bool) -> tuple[str, Callable[[dict], dict] | None]:
    if model_type == "chat":
        return ("acompletion" if asynchronous else "completion"), None
    if model_type == "text":
        return ("atext_completion" if asynchronous else "text_completion"), chat_to_text_request
    if model_type == "responses":
        return ("aresponses" if asynchronous else "responses"), chat_to_responses_request
    raise errors.LMConfigurationError(f"model_type must be 'chat', 'text' or 'responses', got {model_type!r}")


def complete(request: dict[str, Any], model_type: str, num_retries: int, user_agent: str) -> Any:
    """Send `request` to its provider, retrying transient failures; return LiteLLM's response."""
    call, sent = _litellm_call(request, model_type, user_agent, asynchronous=False)
    attempt = 0
    while True:
        quiet = _quiet(sent)
        try:
            return call(num_retries=0, max_retries=0, **sent)
        except Exception as exc:
            error = _failure(exc, request, attempt, num_retries)
        finally:
            if quiet is not None:
                _unlogged.reset(quiet)
        time.sleep(backoff_seconds(attempt, error.retry_after))
        attempt += 1


async def acomplete(request: dict[str, Any], model_type: str, num_retries: int, user_agent: str) -> Any:
    """The async twin of `complete`, through LiteLLM's async entry points."""
    import asyncio

    if _litellm is None:
        # Importing LiteLLM takes seconds: on a worker thread, so the loop's other tasks run meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, load_litellm)
    call, sent = _litellm_call(request, model_type, user_agent, asynchronous=True)
    attempt = 0
    while True:
        # Set and reset within this coroutine, so in the caller's task context and nowhere else.
        quiet = _quiet(sent)
        try:
            return await call(num_retries=0, max_retries=0, **sent)
        except Exception as exc:
            error = _failure(exc, request, attempt, num_retries)
        finally:
            if quiet is not None:
                _unlogged.reset(quiet)
        await asyncio.sleep(backoff_seconds(attempt, error.retry_after))
        attempt += 1


def _quiet(sent: dict[str, Any]) -> Any:
    """Skip LiteLLM's success logging for the next call when nothing would receive it: the reset token, or None."""
    if _unlogged is None or litellm_logging.anyone_listens(_litellm, sent):
        return None
    return _unlogged.set(True)


def _litellm_call(
    request: dict[str, Any], model_type: str, user_agent: str, asynchronous: bool
) -> tuple[Callable[..., Any], dict[str, Any]]:
    litellm = load_litellm()
    name, convert = _entry_points(model_type, asynchronous)
    sent = prepare_provider_request(request, user_agent)
    if convert is not None:
        sent = convert(sent)
    if model_type == "text":
        client = text_clients.client_for(litellm, sent, asynchronous)
        if client is not None:
            sent["client"] = client
    return getattr(litellm, name), sent


def _failure(exc: Exception, request: dict[str, Any], attempt: int, num_retries: int) -> errors.LMError:
    """The typed error for a failed attempt, to retry after; raised here when it is not worth retrying."""
    error = map_error(exc, request["model"], secrets=_secrets_of(request))
    if attempt >= num_retries or not errors.is_retryable_lm_error(error):
        # Not chained: LiteLLM's own exception text can carry the API key.
        raise error from None
    return error


def _secrets_of(request: dict[str, Any]) -> list[str]:
    from turbodspy.clients.secrets import is_credential_header

    found = [request.get("api_key")]
    for name in ("extra_headers", "headers"):
        headers = request.get(name) or {}
        found += [str(v) for h, v in headers.items() if is_credential_header(str(h))]
    # A bearer header's value ends with the key: hide that part on its own too.
    found += [v.split()[-1] for v in found if isinstance(v, str) and " " in v]
    return [v for v in found if isinstance(v, str) and len(v) >= 6]


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2**attempt) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 4 * RETRY_MAX_SECONDS))
    return delay


# LiteLLM exception class name -> our error class. Checked along the MRO, most specific first.
_ERROR_CLASSES: dict[str, type[errors.LMError]] = {
    "ContextWindowExceededError": errors.ContextWindowExceededError,
    "AuthenticationError": errors.LMAuthError,
    "PermissionDeniedError": errors.LMAuthError,
    "RateLimitError": errors.LMRateLimitError,
    "NotFoundError": errors.LMUnsupportedModelError,
    "UnsupportedParamsError": errors.LMUnsupportedFeatureError,
    "BadRequestError": errors.LMInvalidRequestError,
    "UnprocessableEntityError": errors.LMInvalidRequestError,
    "Timeout": errors.LMTimeoutError,
    "APITimeoutError": errors.LMTimeoutError,
    "APIConnectionError": errors.LMTransportError,
    "InternalServerError": errors.LMServerError,
    "ServiceUnavailableError": errors.LMServerError,
    "BadGatewayError": errors.LMServerError,
}


def map_error(exc: BaseException, model: str, secrets: list[str] | None = None) -> errors.LMError:
    """LiteLLM's (or the HTTP client's) exception as one of our typed errors, with what is known about it.

    The message never repeats `secrets` (the request's key and credential headers), even if the provider did.
    """
    if isinstance(exc, errors.LMError):
        return exc
    status = _status_of(exc)
    headers = _headers_of(exc)
    cls = next((_ERROR_CLASSES[c.__name__] for c in type(exc).__mro__ if c.__name__ in _ERROR_CLASSES), None)
    if cls is None or (cls is errors.LMTransportError and status is not None):
        cls = _class_for_status(status)
    if _is_connection_failure(exc):
        # Nothing came back. A client-side timeout has a connection error as its cause (openai's APITimeoutError
        # is one) and stays a timeout, without the 408 LiteLLM makes up for it.
        cls = errors.LMTimeoutError if cls is errors.LMTimeoutError else errors.LMTransportError
        status = None
    metadata = {
        "model": model,
        "provider": provider_of(model),
        "status": status,
        "request_id": headers.get("x-request-id") or headers.get("request-id"),
        "retry_after": _retry_after(headers),
    }
    message = _message_of(exc)
    for secret in secrets or ():
        message = message.replace(secret, "****")
    if "No module named 'mcp'" in message:
        return errors.LMUnsupportedFeatureError(
            "model_type='responses' uses LiteLLM's Responses API, which needs the MCP SDK: "
            "pip install 'turbodspy[responses]'",
            features=["responses"],
            model=model,
            provider=provider_of(model),
        )
    if "Missing credentials" in message or "api_key client option must be set" in message:
        cls = errors.LMAuthError  # the client refused before sending: no point retrying
    if cls is errors.ContextWindowExceededError:
        return errors.ContextWindowExceededError(message=message, **metadata)
    return cls(message, **metadata)


_CONNECTION_FAILURES = {"APIConnectionError", "ConnectError", "ConnectTimeout", "RemoteProtocolError", "ReadError"}


def _is_connection_failure(exc: BaseException) -> bool:
    """LiteLLM reports a refused or dropped connection as a 500 'Connection error.': look at what caused it."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if any(c.__name__ in _CONNECTION_FAILURES for c in type(seen).__mro__) and seen is not exc:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _class_for_status(status: int | None) -> type[errors.LMError]:
    if status is None:
        return errors.LMUnexpectedError
    if status == 429:
        return errors.LMRateLimitError
    if status in (401, 403):
        return errors.LMAuthError
    if status == 404:
        return errors.LMUnsupportedModelError
    if status == 408:
        return errors.LMTimeoutError
    if status >= 500:
        return errors.LMServerError
    if status >= 400:
        return errors.LMInvalidRequestError
    return errors.LMUnexpectedError


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _headers_of(exc: BaseException) -> dict[str, str]:
    for source in (getattr(exc, "headers", None), getattr(getattr(exc, "response", None), "headers", None)):
        if source:
            try:
                return {str(k).lower(): str(v) for k, v in dict(source).items()}
            except (TypeError, ValueError):
                continue
    hidden = getattr(exc, "litellm_response_headers", None)
    if hidden:
        return {str(k).lower(): str(v) for k, v in dict(hidden).items()}
    return {}


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _message_of(exc: BaseException) -> str:
    return str(getattr(exc, "message", "") or exc) or type(exc).__name__
