"""turbodspy: DSPy's language-model layer and core modules with a Rust core.

`import turbodspy as dspy` runs DSPy 3.4.1 programs unchanged. Import stays cheap: LiteLLM loads on the
first provider call, never here.
"""

from turbodspy._core import __version__
from turbodspy.errors import (
    AdapterParseError,
    ContextWindowExceededError,
    DSPyError,
    LMAuthError,
    LMConfigurationError,
    LMError,
    LMInvalidRequestError,
    LMProviderError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMTransportError,
    LMUnsupportedFeatureError,
    LMUnsupportedModelError,
)
from turbodspy.settings import configure, context, settings

__all__ = [
    "AdapterParseError",
    "ContextWindowExceededError",
    "DSPyError",
    "LMAuthError",
    "LMConfigurationError",
    "LMError",
    "LMInvalidRequestError",
    "LMProviderError",
    "LMRateLimitError",
    "LMServerError",
    "LMTimeoutError",
    "LMTransportError",
    "LMUnsupportedFeatureError",
    "LMUnsupportedModelError",
    "__version__",
    "configure",
    "context",
    "settings",
]
