"""Offline testing helpers: a real local LLM server that LiteLLM (and so turbodspy and DSPy) can talk to.

    from turbodspy.testing import LocalLLMServer, Reply

    with LocalLLMServer() as server:
        lm = dspy.LM("openai/test-model", api_base=server.openai_base, api_key="local")
        # anthropic/..., gemini/..., ollama_chat/..., azure/...: api_base=server.url

It answers deterministically (the same conversation gets the same answer), in the shape DSPy's Chat, JSON and
XML adapters ask for, with valid values of each output field's type. Tests can also:

- `server.script(["text", Reply(reasoning_content=..., tool_calls=[...])])` or `server.script(fn)` to force answers;
- `server.fail_next("429", retry_after=1)` (see `FAULT_KINDS`), `server.latency = 0.5`, `server.api_key = "k"`,
  `server.models = ("test-model",)`, `server.context_window = 100` to provoke errors;
- read `server.requests` / `server.last_request` / `server.model_requests` (method, path, headers, JSON body).

Under pytest (the plugin loads with turbodspy installed, or via `pytest_plugins = ["turbodspy.testing.pytest_plugin"]`),
the `llm_server` fixture gives a running server, reset for each test; `llm_server_session` is the shared one.
"""

from turbodspy.testing.answers import Reply
from turbodspy.testing.server import FAULT_KINDS, Headers, LocalLLMServer, RecordedRequest

__all__ = ["FAULT_KINDS", "Headers", "LocalLLMServer", "RecordedRequest", "Reply"]
