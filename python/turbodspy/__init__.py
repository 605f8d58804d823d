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
from turbodspy.evaluate import Evaluate, EvaluationResult
from turbodspy.predict import ChainOfThought, Parallel, Predict
from turbodspy.primitives import BaseModule, Completions, Example, Module, Prediction
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
from turbodspy.utils.asyncify import asyncify
from turbodspy.utils.callback import BaseCallback
from turbodspy.utils.usage_tracker import track_usage

from turbodspy import utils  # isort: skip

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
    "LMProviderError",
    "LMRateLimitError",
    "LMServerError",
    "LMTimeoutError",
    "LMTransportError",
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
    "make_signature",
    "settings",
    "track_usage",
    "utils",
]
