"""Shared fixtures: the local LLM server (`llm_server`, `llm_server_session`)."""

pytest_plugins = ["turbodspy.testing.pytest_plugin"]
