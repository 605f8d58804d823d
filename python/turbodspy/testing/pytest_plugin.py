"""pytest fixtures for the local LLM server: `llm_server` (per test) and `llm_server_session` (shared).

Load it with `pytest_plugins = ["turbodspy.testing.pytest_plugin"]` in a conftest.py (installed turbodspy
also registers it through the `pytest11` entry point).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from turbodspy.testing.server import LocalLLMServer


@pytest.fixture(scope="session")
def llm_server_session() -> Iterator[LocalLLMServer]:
    """One local LLM server for the whole session; state carries over between tests."""
    with LocalLLMServer() as server:
        yield server


@pytest.fixture
def llm_server(llm_server_session: LocalLLMServer) -> Iterator[LocalLLMServer]:
    """The session's local LLM server with no recorded requests, faults, scripts or settings from other tests."""
    llm_server_session.reset()
    yield llm_server_session
    llm_server_session.reset()
