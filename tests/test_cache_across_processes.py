"""The disk tier behind `LM`: a fresh process answers from the cache without a request and without LiteLLM."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import turbodspy as dspy
lm = dspy.LM("openai/gpt-4o-mini", api_base=sys.argv[1], api_key="sk-secret-in-process-only", temperature=0.5)
answers = [lm(f"question {i}")[0] for i in range(20)]
print(json.dumps({
    "answers": answers,
    "litellm_loaded": "litellm" in sys.modules,
    "cache_hits": sum(bool(getattr(e["response"], "cache_hit", False)) for e in lm.history),
    "contents": [e["response"].choices[0].message.content for e in lm.history],
    "response_models": [e["response_model"] for e in lm.history],
}))
"""


def run(server, cache_dir) -> dict:
    env = {"TURBODSPY_CACHEDIR": str(cache_dir), "PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, server.openai_base], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_answers_from_disk_without_requests_or_litellm(llm_server, tmp_path):
    first = run(llm_server, tmp_path / "cache")
    assert len(llm_server.model_requests) == 20
    assert first["litellm_loaded"] is True and first["cache_hits"] == 0
    second = run(llm_server, tmp_path / "cache")
    assert second["answers"] == first["answers"]
    assert len(llm_server.model_requests) == 20  # nothing new reached the server
    assert second["cache_hits"] == 20
    assert second["contents"] == first["contents"] == first["answers"]
    assert second["response_models"] == first["response_models"]
    assert second["litellm_loaded"] is False
    stored = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert b"sk-secret-in-process-only" not in stored


def test_a_malformed_cache_limit_turns_the_disk_off_with_a_warning_not_a_crash(llm_server, tmp_path):
    env = {
        "TURBODSPY_CACHEDIR": str(tmp_path / "cache"),
        "TURBODSPY_CACHE_LIMIT": "lots",
        "PATH": "/usr/bin:/bin",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    code = (
        "import sys, turbodspy as dspy; lm = dspy.LM('openai/m', api_base=sys.argv[1], api_key='k');"
        "print(lm('q') == lm('q'), dspy.cache.disk is None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, llm_server.openai_base], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["True", "True"]
    assert "TURBODSPY_CACHE_LIMIT must be a positive size" in out.stderr
    assert len(llm_server.model_requests) == 1  # the memory tier still serves the repeat
