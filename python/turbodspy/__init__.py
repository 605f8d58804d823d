"""turbodspy: DSPy's language-model layer and core modules with a Rust core.

`import turbodspy as dspy` runs DSPy 3.4.1 programs unchanged. Import stays cheap: LiteLLM loads on the
first provider call, never here.
"""

from turbodspy._core import __version__

__all__ = ["__version__"]
