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
from turbodspy.evaluate import Evaluate, EvaluationResult
from turbodspy.predict import Parallel
from turbodspy.primitives import BaseModule, Completions, Example, Module, Prediction
from turbodspy.settings import configure, context, settings
from turbodspy.utils.asyncify import asyncify
from turbodspy.utils.callback import BaseCallback
from turbodspy.utils.usage_tracker import track_usage

from turbodspy import utils  # isort: skip

__all__ = [
    "AdapterParseError",
    "BaseCallback",
    "BaseModule",
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
    "Prediction",
    "__version__",
    "asyncify",
    "configure",
    "context",
    "settings",
    "track_usage",
    "utils",
]
