"""The LM layer, turbodspy against DSPy 3.4.1 in one run: import, request keys, cache hits, uncached calls.

Each pair runs the same input against the same local server; answers are compared before anything is timed.
Ratios: `make bench` prints both rows of each group; divide DSPy's median by turbodspy's.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import subprocess
import sys
import time
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


# -- uncached calls ------------------------------------------------------------------------------------------
# The server runs in its own process here, so its request handling does not share our GIL and each library's
# numbers are its own client-side cost. Each timed function also reports the CPU time it used per call.


def _serve(conn, latency: float) -> None:
    with LocalLLMServer(latency=latency) as s:
        conn.send(s.openai_base)
        conn.recv()


@contextlib.contextmanager
def _server_process(latency: float = 0.0):
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(child, latency), daemon=True)
    process.start()
    try:
        yield conn.recv()
    finally:
        conn.send("stop")
        process.join(10)


@pytest.fixture(scope="module")
def remote_server():
    with _server_process() as base:
        yield base


@pytest.fixture(scope="module")
def slow_server():
    with _server_process(latency=SLOW_SECONDS) as base:
        yield base


def _timed_calls(benchmark, call, rounds: int = 200):
    cpu = []

    def one():
        start = time.process_time()
        call()
        cpu.append(time.process_time() - start)

    benchmark.pedantic(one, rounds=rounds, warmup_rounds=5)
    benchmark.extra_info["cpu_ms_per_call_median"] = round(sorted(cpu)[len(cpu) // 2] * 1e3, 3)


@pytest.mark.benchmark(group="uncached lm(prompt) over HTTP")
def test_uncached_turbodspy(benchmark, remote_server, dspy):
    ours = turbodspy.LM("openai/gpt-4o-mini", api_base=remote_server, api_key=KEY, cache=False)
    theirs = dspy.LM("openai/gpt-4o-mini", api_base=remote_server, api_key=KEY, cache=False)
    assert ours("Say this is a test!") == theirs("Say this is a test!")
    _timed_calls(benchmark, lambda: ours("Say this is a test!"))


@pytest.mark.benchmark(group="uncached lm(prompt) over HTTP")
def test_uncached_dspy(benchmark, remote_server, dspy):
    theirs = dspy.LM("openai/gpt-4o-mini", api_base=remote_server, api_key=KEY, cache=False)
    _timed_calls(benchmark, lambda: theirs("Say this is a test!"))


@pytest.mark.benchmark(group="uncached lm(prompt) over HTTP")
def test_uncached_plain_http_floor(benchmark, remote_server):
    """The floor: one POST with the standard library, no client library at all."""
    import http.client
    import json
    from urllib.parse import urlparse

    url = urlparse(remote_server)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say this is a test!"}]})

    def post():
        conn.request("POST", url.path + "/chat/completions", body, {"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())

    assert post()["choices"][0]["message"]["content"]
    _timed_calls(benchmark, post)


@pytest.mark.benchmark(group="uncached lm(prompt), model_type='text'")
@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
def test_uncached_text(benchmark, remote_server, dspy, library):
    lib = turbodspy if library == "turbodspy" else dspy
    model = "openai/gpt-3.5-turbo-instruct"
    lm = lib.LM(model, model_type="text", api_base=remote_server, api_key=KEY, cache=False)
    other = (dspy if library == "turbodspy" else turbodspy).LM(
        model, model_type="text", api_base=remote_server, api_key=KEY, cache=False
    )
    assert lm("Say this is a test!") == other("Say this is a test!")
    _timed_calls(benchmark, lambda: lm("Say this is a test!"), rounds=100)


# Concurrent acall against a server that takes 200 ms per request: the batch shape of issue 6 without the batch
# machinery. Ideal: IN_FLIGHT / SLOW_SECONDS calls per second; what is lost is client CPU per call on one loop.
SLOW_SECONDS = 0.2
IN_FLIGHT = 32
CONCURRENT_CALLS = 640


async def _in_flight(lm, count: int) -> list:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int):
        async with gate:
            return await lm.acall(f"Question number {i}")

    return await asyncio.gather(*(one(i) for i in range(count)))


@pytest.mark.benchmark(group=f"uncached await lm.acall, {IN_FLIGHT} in flight, 200 ms server")
@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
def test_uncached_concurrent_acall(benchmark, slow_server, dspy, library):
    lib = turbodspy if library == "turbodspy" else dspy
    lm = lib.LM("openai/gpt-4o-mini", api_base=slow_server, api_key=KEY, cache=False)
    other = (dspy if library == "turbodspy" else turbodspy).LM(
        "openai/gpt-4o-mini", api_base=slow_server, api_key=KEY, cache=False
    )

    async def run():
        answers = await _in_flight(lm, IN_FLIGHT)  # warm: connections open, code paths loaded
        assert answers == await _in_flight(other, IN_FLIGHT)
        start, cpu = time.perf_counter(), time.thread_time()
        await _in_flight(lm, CONCURRENT_CALLS)
        return time.perf_counter() - start, time.thread_time() - cpu

    seconds, cpu = [], []

    def timed():
        wall, loop_cpu = asyncio.run(run())
        seconds.append(wall)
        cpu.append(loop_cpu)

    benchmark.pedantic(timed, rounds=1, iterations=1)
    rate = CONCURRENT_CALLS / seconds[0]
    benchmark.extra_info["calls_per_second"] = round(rate, 1)
    benchmark.extra_info["share_of_ideal"] = round(rate / (IN_FLIGHT / SLOW_SECONDS), 3)
    benchmark.extra_info["loop_cpu_ms_per_call"] = round(cpu[0] / CONCURRENT_CALLS * 1e3, 3)
    print(
        f"\n[{library}] {rate:.1f} calls/s = {rate / (IN_FLIGHT / SLOW_SECONDS):.1%} of ideal, "
        f"event-loop CPU {cpu[0] / CONCURRENT_CALLS * 1e3:.2f} ms per call"
    )


# The key a cache hit computes: the same request again (a re-run of a cached batch, or a retried call).
@pytest.mark.benchmark(group="request key, the same 2 KB chat request again")
def test_request_key_repeated_turbodspy(benchmark, dspy):
    request = _batch_requests(1)[0]
    assert turbodspy.cache.cache_key(request, IGNORED) == dspy.cache.cache_key(request, IGNORED)
    benchmark(turbodspy.cache.cache_key, request, IGNORED)


@pytest.mark.benchmark(group="request key, the same 2 KB chat request again")
def test_request_key_repeated_dspy(benchmark, dspy):
    benchmark(dspy.cache.cache_key, _batch_requests(1)[0], IGNORED)
