"""turbodspy: DSPy's language-model layer and core modules with a Rust core.

`import turbodspy as dspy` runs DSPy 3.4.1 programs unchanged. Import stays cheap: LiteLLM loads on the
first provider call, never here.
"""

import importlib
from typing import Any

from turbodspy._core import __version__
from turbodspy.clients.base_lm import BaseLM
from turbodspy.clients.cache import Cache, configure_cache
from turbodspy.clients.history import inspect_history
from turbodspy.clients.lm import LM
from turbodspy.errors import (
    AdapterParseError,
    ContextWindowExceededError,
    DSPyError,
    LMAuthError,
    LMConfigurationError,
    LMError,
    LMInvalidRequestError,
    LMNotConfiguredError,
    LMProviderError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMTransportError,
    LMUnexpectedError,
    LMUnsupportedFeatureError,
    LMUnsupportedModelError,
    is_retryable_lm_error,
)
from turbodspy.settings import configure, context, settings

# Signatures, adapters and modules need pydantic, which costs more to import than all of the above: they load
# on first use (`turbodspy.Predict`), so a cached LM run never pays for them.
_LAZY = {
    "Adapter": "turbodspy.adapters",
    "ChatAdapter": "turbodspy.adapters",
    "History": "turbodspy.adapters",
    "JSONAdapter": "turbodspy.adapters",
    "Evaluate": "turbodspy.evaluate",
    "EvaluationResult": "turbodspy.evaluate",
    "ChainOfThought": "turbodspy.predict",
    "Parallel": "turbodspy.predict",
    "Predict": "turbodspy.predict",
    "BaseModule": "turbodspy.primitives",
    "Completions": "turbodspy.primitives",
    "Example": "turbodspy.primitives",
    "Module": "turbodspy.primitives",
    "Prediction": "turbodspy.primitives",
    "InputField": "turbodspy.signatures",
    "OldField": "turbodspy.signatures",
    "OldInputField": "turbodspy.signatures",
    "OldOutputField": "turbodspy.signatures",
    "OutputField": "turbodspy.signatures",
    "Signature": "turbodspy.signatures",
    "SignatureMeta": "turbodspy.signatures",
    "SignatureSyntaxError": "turbodspy.signatures",
    "ensure_signature": "turbodspy.signatures",
    "infer_prefix": "turbodspy.signatures",
    "make_signature": "turbodspy.signatures",
    "asyncify": "turbodspy.utils.asyncify",
    "BaseCallback": "turbodspy.utils.callback",
    "track_usage": "turbodspy.utils.usage_tracker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if name == "utils":
            return importlib.import_module("turbodspy.utils")
        raise AttributeError(f"module 'turbodspy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"utils"})


# The process-wide response cache; `configure_cache(...)` or plain assignment replaces it.
cache = Cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=None)

__all__ = [
    "LM",
    "Adapter",
    "AdapterParseError",
    "BaseCallback",
    "BaseLM",
    "BaseModule",
    "Cache",
    "ChainOfThought",
    "ChatAdapter",
    "Completions",
    "ContextWindowExceededError",
    "DSPyError",
    "Evaluate",
    "EvaluationResult",
    "Example",
    "History",
    "InputField",
    "JSONAdapter",
    "LMAuthError",
    "LMConfigurationError",
    "LMError",
    "LMInvalidRequestError",
    "LMNotConfiguredError",
    "LMProviderError",
    "LMRateLimitError",
    "LMServerError",
    "LMTimeoutError",
    "LMTransportError",
    "LMUnexpectedError",
    "LMUnsupportedFeatureError",
    "LMUnsupportedModelError",
    "Module",
    "OldField",
    "OldInputField",
    "OldOutputField",
    "OutputField",
    "Parallel",
    "Predict",
    "Prediction",
    "Signature",
    "SignatureMeta",
    "SignatureSyntaxError",
    "__version__",
    "asyncify",
    "cache",
    "configure",
    "configure_cache",
    "context",
    "ensure_signature",
    "infer_prefix",
    "inspect_history",
    "is_retryable_lm_error",
    "make_signature",
    "settings",
    "track_usage",
    "utils",
]
