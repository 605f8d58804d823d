"""Utilities users import from `turbodspy.utils`, as from `dspy.utils`: DummyLM, callbacks, usage tracking."""

from __future__ import annotations

from typing import Any

from turbodspy.utils.callback import BaseCallback, with_callbacks
from turbodspy.utils.usage_tracker import UsageTracker, track_usage

__all__ = ["BaseCallback", "DummyLM", "UsageTracker", "track_usage", "with_callbacks"]


def __getattr__(name: str) -> Any:
    # DummyLM is a BaseLM: load the LM layer only when someone asks for it.
    if name == "DummyLM":
        from turbodspy.utils.dummies import DummyLM

        return DummyLM
    raise AttributeError(f"module 'turbodspy.utils' has no attribute {name!r}")
