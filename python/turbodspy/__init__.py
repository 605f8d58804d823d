"""turbodspy: DSPy's language-model layer and core modules with a Rust core.

`import turbodspy as dspy` runs DSPy 3.4.1 programs unchanged. Import stays cheap: LiteLLM loads on the
first provider call, never here.
"""

from turbodspy._core import __version__
from turbodspy.adapters import Adapter, ChatAdapter, History, JSONAdapter
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

# The process-wide response cache; `configure_cache(...)` or plain assignment replaces it.
cache = Cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=None)

__all__ = [
    "LM",
    "Adapter",
    "AdapterParseError",
    "BaseLM",
    "Cache",
    "ChatAdapter",
    "ContextWindowExceededError",
    "DSPyError",
    "History",
    "InputField",
    "JSONAdapter",
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
    "cache",
    "configure",
    "configure_cache",
    "context",
    "ensure_signature",
    "infer_prefix",
    "inspect_history",
    "make_signature",
    "settings",
]
