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
from turbodspy.signatures import (
    InputField,
    OldField,
    OldInputField,
    OldOutputField,
    OutputField,
    Signature,
    SignatureMeta,
    SignatureSyntaxError,
    ensure_signature,
    infer_prefix,
    make_signature,
)

__all__ = [
    "AdapterParseError",
    "ContextWindowExceededError",
    "DSPyError",
    "InputField",
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
    "OldField",
    "OldInputField",
    "OldOutputField",
    "OutputField",
    "Signature",
    "SignatureMeta",
    "SignatureSyntaxError",
    "__version__",
    "configure",
    "context",
    "ensure_signature",
    "infer_prefix",
    "make_signature",
    "settings",
]
