"""Offline testing helpers: a real local LLM server that LiteLLM (and so turbodspy and DSPy) can talk to.

    from turbodspy.testing import LocalLLMServer

    with LocalLLMServer() as server:
        lm = dspy.LM("openai/test-model", api_base=server.openai_base, api_key="local")

Under pytest, the `llm_server` fixture gives a running server, reset for each test.
"""

from turbodspy.testing.answers import Reply
from turbodspy.testing.server import FAULT_KINDS, Headers, LocalLLMServer, RecordedRequest

__all__ = ["FAULT_KINDS", "Headers", "LocalLLMServer", "RecordedRequest", "Reply"]
