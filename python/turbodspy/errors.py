"""The error hierarchy, with DSPy 3.4.1's names: every error says what went wrong and carries what is known.

`LMError` and its subclasses cover the provider boundary (each with model, provider, HTTP status and request
id where known); `AdapterParseError` covers completions that do not fit the signature.
"""

from __future__ import annotations

from typing import Any


class DSPyError(Exception):
    """Base class of turbodspy's errors, with structured metadata about where the failure happened."""

    default_code: str | None = None

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        provider_code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ):
        self.message = message
        self.code = code or self.default_code
        self.model = model
        self.provider = provider
        self.provider_code = provider_code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        prefix = f"[{model}] " if model else ""
        super().__init__(f"{prefix}{message}" if message else prefix.rstrip())


class LMError(DSPyError):
    """A language-model call failed. Catch this for any failure at the provider boundary."""

    default_code = "lm_error"


class LMConfigurationError(LMError):
    """The LM is configured in a way the provider or model cannot accept (fix the `LM(...)` arguments)."""

    default_code = "configuration"


class LMNotConfiguredError(LMConfigurationError):
    """No LM is configured, or it lacks required provider settings."""

    default_code = "not_configured"


class LMTransportError(LMError):
    """The request failed before the provider answered: connection refused or reset, DNS, TLS."""

    default_code = "transport"


class LMUnsupportedFeatureError(LMError):
    """The model, provider or turbodspy does not support a requested feature."""

    default_code = "unsupported_feature"

    def __init__(self, message: str = "", *, features: list[str] | None = None, **kwargs: Any):
        self.features = list(features or [])
        super().__init__(message, **kwargs)


class LMProviderError(LMError):
    """The provider answered with an error."""

    default_code = "provider"


class LMUnexpectedError(LMError):
    """An unclassified failure at the provider boundary; the original exception is the cause."""

    default_code = "unexpected"


class LMAuthError(LMProviderError):
    """The provider rejected the credentials: check the API key (argument or environment variable)."""

    default_code = "auth"


class LMRateLimitError(LMProviderError):
    """The provider rate-limited the request; `retry_after` holds its suggested delay when it sent one."""

    default_code = "rate_limit"


class LMInvalidRequestError(LMProviderError):
    """The provider rejected the request's shape or a parameter."""

    default_code = "invalid_request"


class ContextWindowExceededError(LMInvalidRequestError):
    """The prompt does not fit the model's context window."""

    default_code = "context_window_exceeded"

    def __init__(self, *, model: str | None = None, message: str = "Context window exceeded", **kwargs: Any):
        super().__init__(message, model=model, **kwargs)


class LMUnsupportedModelError(LMInvalidRequestError):
    """The provider does not know or does not serve the requested model."""

    default_code = "unsupported_model"


class LMTimeoutError(LMProviderError):
    """The provider did not answer in time."""

    default_code = "timeout"


class LMServerError(LMProviderError):
    """The provider failed while handling the request (HTTP 5xx)."""

    default_code = "server"


RETRYABLE_LM_ERRORS = (LMRateLimitError, LMTimeoutError, LMServerError, LMTransportError)


def is_retryable_lm_error(error: BaseException) -> bool:
    """Whether an error is transient, so the same request may succeed if sent again."""
    return isinstance(error, RETRYABLE_LM_ERRORS)


class AdapterParseError(DSPyError):
    """An adapter could not parse the LM's completion into the signature's output fields.

    Carries the adapter's name, the signature, the raw completion (`lm_response`) and what was parsed, so the
    caller can see which fields were missing or invalid.
    """

    default_code = "adapter_parse_error"

    def __init__(
        self,
        adapter_name: str,
        signature: Any,
        lm_response: str,
        message: str | None = None,
        parsed_result: dict[str, Any] | None = None,
    ):
        self.adapter_name = adapter_name
        self.signature = signature
        self.lm_response = lm_response
        self.parsed_result = parsed_result
        expected = ", ".join(signature.output_fields.keys())
        text = f"{message}\n\n" if message else ""
        text += (
            f"Adapter {adapter_name} failed to parse the LM response. \n\n"
            f"LM Response: {lm_response} \n\n"
            f"Expected to find output fields in the LM response: [{expected}] \n\n"
        )
        if parsed_result is not None:
            text += f"Actual output fields parsed from the LM response: [{', '.join(parsed_result.keys())}] \n\n"
        super().__init__(text)
