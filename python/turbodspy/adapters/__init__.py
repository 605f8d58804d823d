"""Adapters: signature + demos + inputs -> LM messages, and LM outputs -> typed fields (DSPy 3.4.1's prompts)."""

from turbodspy.adapters.base import Adapter
from turbodspy.adapters.chat_adapter import ChatAdapter
from turbodspy.adapters.json_adapter import JSONAdapter
from turbodspy.adapters.types import History

__all__ = ["Adapter", "ChatAdapter", "History", "JSONAdapter"]
