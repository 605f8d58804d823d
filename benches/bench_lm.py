"""The LM layer, turbodspy against DSPy 3.4.1 in one run: import, request keys, cache hits, uncached calls.

Each pair runs the same input against the same local server; answers are compared before anything is timed.
Ratios: `make bench` prints both rows of each group; divide DSPy's median by turbodspy's.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import turbodspy
from turbodspy.testing import LocalLLMServer

KEY = "sk-bench-0000000000"


@pytest.fixture(scope="module")
def server():
    with LocalLLMServer() as s:
        yield s


@pytest.fixture(scope="module")
def dspy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import dspy as real

    real.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    return real


@pytest.fixture(autouse=True)
def quiet_dspy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # DSPy deprecates messages= in favour of lm15
        yield


def _import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out)


@pytest.mark.benchmark(group="import (fresh interpreter)")
@pytest.mark.parametrize("module", ["turbodspy", "dspy"])
def test_import(benchmark, module):
    # Each round is a new interpreter; the timed part is the import itself, as measured inside it.
    seconds = []
    benchmark.pedantic(lambda: seconds.append(_import_seconds(module)), rounds=5, iterations=1)
    benchmark.extra_info["import_seconds_median"] = sorted(seconds)[len(seconds) // 2]


def _batch_requests(count: int = 1000) -> list[dict]:
    """2 KB chat requests as a batch run makes them: one system prompt (the signature), varying questions."""
    system = ("Your input fields are: `question`. Your output fields are: `answer`. Answer briefly. " * 20)[:1600]
    return [
        {
            "model": "openai/gpt-4o-mini",
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": f"[[ ## question ## ]]\nQuestion number {i}: " + "why? " * 70},
            ],
            "temperature": 0.7,
            "max_tokens": 512,
            "api_key": KEY,
            "_fn_identifier": "dspy.clients.lm.litellm_completion",
        }
        for i in range(count)
    ]


IGNORED = ("api_key", "api_base", "base_url")


# One round keys the whole batch of 1,000 requests, so per-call harness overhead does not blur the ratio.
@pytest.mark.benchmark(group="request keys, a batch of 1,000 2 KB chat requests")
def test_request_key_turbodspy(benchmark, dspy):
    requests = _batch_requests()
    assert len(requests[0]["messages"][0]["content"]) + len(requests[0]["messages"][1]["content"]) > 1900
    assert [turbodspy.cache.cache_key(r, IGNORED) for r in requests] == [
        dspy.cache.cache_key(r, IGNORED) for r in requests
    ]
    key = turbodspy.cache.cache_key
    benchmark(lambda: [key(r, IGNORED) for r in requests])


@pytest.mark.benchmark(group="request keys, a batch of 1,000 2 KB chat requests")
def test_request_key_dspy(benchmark, dspy):
    requests = _batch_requests()
    key = dspy.cache.cache_key
    benchmark(lambda: [key(r, IGNORED) for r in requests])


@pytest.mark.benchmark(group="memory-cache hit, lm(prompt)")
def test_memory_hit_turbodspy(benchmark, server, dspy, tmp_path):
    turbodspy.configure_cache(disk_cache_dir=tmp_path)
    ours = turbodspy.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key=KEY, temperature=0.7)
    theirs = dspy.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key=KEY, temperature=0.7)
    assert ours("Say this is a test!") == theirs("Say this is a test!")
    benchmark(ours, "Say this is a test!")


@pytest.mark.benchmark(group="memory-cache hit, lm(prompt)")
def test_memory_hit_dspy(benchmark, server, dspy):
    theirs = dspy.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key=KEY, temperature=0.7)
    theirs("Say this is a test!")
    benchmark(theirs, "Say this is a test!")


@pytest.mark.benchmark(group="uncached lm(prompt) over HTTP")
def test_uncached_turbodspy(benchmark, server, dspy):
    ours = turbodspy.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key=KEY, cache=False)
    theirs = dspy.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key=KEY, cache=False)
    assert ours("Say this is a test!") == theirs("Say this is a test!")
    benchmark.pedantic(ours, args=("Say this is a test!",), rounds=50, warmup_rounds=3)


@pytest.mark.benchmark(group="uncached lm(prompt) over HTTP")
def test_uncached_dspy(benchmark, server, dspy):
    theirs = dspy.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key=KEY, cache=False)
    benchmark.pedantic(theirs, args=("Say this is a test!",), rounds=50, warmup_rounds=3)


@pytest.mark.benchmark(group="uncached lm(prompt) over HTTP")
def test_uncached_plain_http_floor(benchmark, server):
    """The floor: one POST with the standard library, no client library at all."""
    import http.client
    import json
    from urllib.parse import urlparse

    url = urlparse(server.openai_base)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say this is a test!"}]})

    def post():
        conn.request("POST", url.path + "/chat/completions", body, {"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())

    assert post()["choices"][0]["message"]["content"]
    benchmark.pedantic(post, rounds=50, warmup_rounds=3)


# The key a cache hit computes: the same request again (a re-run of a cached batch, or a retried call).
@pytest.mark.benchmark(group="request key, the same 2 KB chat request again")
def test_request_key_repeated_turbodspy(benchmark, dspy):
    request = _batch_requests(1)[0]
    assert turbodspy.cache.cache_key(request, IGNORED) == dspy.cache.cache_key(request, IGNORED)
    benchmark(turbodspy.cache.cache_key, request, IGNORED)


@pytest.mark.benchmark(group="request key, the same 2 KB chat request again")
def test_request_key_repeated_dspy(benchmark, dspy):
    benchmark(dspy.cache.cache_key, _batch_requests(1)[0], IGNORED)
