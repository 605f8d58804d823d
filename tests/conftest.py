"""Shared fixtures: the local LLM server (`llm_server`, `llm_server_session`), and isolation between tests."""

from __future__ import annotations

import os

import pytest

# Never reach for the network or the user's home: LiteLLM's cost map is read locally, caches live in tmp dirs.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

pytest_plugins = ["turbodspy.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
def isolated_turbodspy(tmp_path, monkeypatch):
    """Each test starts with default settings, no `configure` owner, and an empty cache in its own directory."""
    import turbodspy
    from turbodspy.settings import DEFAULT_CONFIG, _fresh

    monkeypatch.setenv("TURBODSPY_CACHEDIR", str(tmp_path / "turbodspy_cache"))
    settings = turbodspy.settings
    saved = dict(settings._config)
    settings._config.clear()
    settings._config.update({k: _fresh(v) for k, v in DEFAULT_CONFIG.items()})
    object.__setattr__(settings, "_owner_thread", None)
    object.__setattr__(settings, "_owner_task", None)
    turbodspy.configure_cache(disk_cache_dir=tmp_path / "turbodspy_cache")
    yield
    settings._config.clear()
    settings._config.update(saved)
    object.__setattr__(settings, "_owner_thread", None)
    object.__setattr__(settings, "_owner_task", None)
