"""turbodspy: DSPy's language-model layer and core modules with a Rust core.

`import turbodspy as dspy` runs DSPy 3.4.1 programs unchanged. Import stays cheap: LiteLLM loads on the
first provider call, never here.
"""

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
from turbodspy.utils.asyncify import asyncify
from turbodspy.utils.callback import BaseCallback
from turbodspy.utils.usage_tracker import track_usage

from turbodspy import utils  # isort: skip

# The process-wide response cache; `configure_cache(...)` or plain assignment replaces it.
cache = Cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=None)

__all__ = [
    "LM",
    "AdapterParseError",
    "BaseCallback",
    "BaseLM",
    "BaseModule",
    "Cache",
    "ChainOfThought",
    "Completions",
    "ContextWindowExceededError",
    "DSPyError",
    "Evaluate",
    "EvaluationResult",
    "Example",
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
    "Parallel",
    "Predict",
    "Prediction",
    "__version__",
    "asyncify",
    "cache",
    "configure",
    "configure_cache",
    "context",
    "inspect_history",
    "settings",
    "track_usage",
    "utils",
]
