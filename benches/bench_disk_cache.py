"""Disk cache, turbodspy vs DSPy 3.4.1 side by side: a disk hit with the memory tier empty (as a user meets it,
`lm(prompt)` in a fresh process, and at the cache's own API), 8 processes writing at once, and bytes on disk per
entry. Both libraries store the same responses under the same request keys.

Run with `make bench` (or `pytest benches/bench_disk_cache.py --benchmark-enable`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

N_KEYS = 2000
WRITERS = 8
WRITES_EACH = 5000
IGNORED = ["api_key", "api_base", "base_url"]
LIMIT = 30 * 1024**3  # both libraries at DSPy's `configure_cache` default


def request(n: int, prefix: str = "") -> dict:
    return {
        "model": "openai/gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Your input fields are:\n1. `question` (str)\n" * 4},
            {"role": "user", "content": f"{prefix}[[ ## question ## ]]\nWhat is {n} plus {n}?"},
        ],
        "temperature": 0.0,
        "max_tokens": 4000,
        "rollout_id": None,
        "_fn_identifier": "dspy.clients.lm.litellm_completion",
    }


def response_text(n: int) -> str:
    # Completions of 0.5-8 KB, the usual range for DSPy programs.
    return (f"[[ ## reasoning ## ]]\n{n} plus {n} is {2 * n}. " * (10 + (n * 37) % 150))[: 500 + (n * 7919) % 7700]


def dspy_value(n: int) -> dict:
    """What DSPy 3.4.1 stores on disk for one chat completion (its `dspy-lm15-result-v1` record)."""
    text = response_text(n)
    usage = {"prompt_tokens": 120, "completion_tokens": len(text) // 4, "total_tokens": 120 + len(text) // 4}
    provider = {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": usage,
    }
    return {
        "_dspy_format": "dspy-lm15-result-v1",
        "responses": [
            {
                "id": f"chatcmpl-{n}",
                "model": "gpt-4o-mini-2024-07-18",
                "message": {"role": "assistant", "parts": [{"type": "text", "text": text}]},
                "finish_reason": "stop",
                "usage": {"input_tokens": 120, "output_tokens": len(text) // 4, "total_tokens": usage["total_tokens"]},
                "provider_data": provider,
            }
        ],
        "outputs": [text],
        "usage": {**usage, "prompt_tokens_details": None, "completion_tokens_details": None},
        "cost": 0.0001,
        "cost_details": {"kind": "unknown", "reason": "a billed token dimension has no known rate"},
        "raw": None,
        "response_model": "gpt-4o-mini-2024-07-18",
    }


def our_record(n: int) -> dict:
    from turbodspy.clients.cache_transfer import convert_dspy_value

    return convert_dspy_value(dspy_value(n))


def disk_bytes(directory: Path) -> int:
    """Bytes allocated on disk (sparse files count only what is written)."""
    return sum(p.stat().st_blocks * 512 for p in directory.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from dspy.clients.cache import Cache

    from turbodspy._core import request_key
    from turbodspy.clients.disk_cache import DiskCache

    dspy_dir, our_dir = tmp_path_factory.mktemp("dspy"), tmp_path_factory.mktemp("turbodspy")
    writer = Cache(
        enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(dspy_dir), disk_size_limit_bytes=LIMIT
    )
    ours = DiskCache(our_dir, LIMIT)
    for n in range(N_KEYS):
        writer.put(request(n), dspy_value(n), IGNORED)
        ours.put(request_key(request(n), IGNORED), our_record(n))
    writer.disk_cache.close()
    ours.close()
    # Readers open afresh, as a new process would; the memory tier is off (DSPy) or absent (ours).
    dspy_reader = Cache(
        enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(dspy_dir), disk_size_limit_bytes=LIMIT
    )
    our_reader = DiskCache(our_dir, LIMIT)
    for n in range(0, N_KEYS, 97):
        theirs, mine = dspy_reader.get(request(n), IGNORED), our_reader.get(request_key(request(n), IGNORED))
        assert theirs["outputs"][0] == mine["response"]["choices"][0]["message"]["content"] == response_text(n)
        assert mine["usage"]["total_tokens"] == theirs["usage"]["total_tokens"]
    yield {"dspy": dspy_reader, "turbodspy": our_reader, "dirs": (dspy_dir, our_dir)}
    dspy_reader.disk_cache.close()


def _cycle_keys():
    state = {"n": 0}

    def next_request():
        n = state["n"] % N_KEYS
        state["n"] += 1
        return (request(n),), {}

    return next_request


def test_disk_hit_dspy(benchmark, stores):
    cache = stores["dspy"]
    benchmark.group = "disk hit, memory tier empty (per key, 2,000 keys)"
    result = benchmark.pedantic(lambda r: cache.get(r, IGNORED), setup=_cycle_keys(), rounds=N_KEYS, iterations=1)
    assert result is not None


def test_disk_hit_turbodspy(benchmark, stores):
    from turbodspy._core import request_key

    cache = stores["turbodspy"]
    benchmark.group = "disk hit, memory tier empty (per key, 2,000 keys)"
    result = benchmark.pedantic(
        lambda r: cache.get(request_key(r, IGNORED)), setup=_cycle_keys(), rounds=N_KEYS, iterations=1
    )
    assert result is not None


def test_bytes_per_entry(stores):
    dspy_dir, our_dir = stores["dirs"]
    theirs, ours = disk_bytes(dspy_dir) / N_KEYS, disk_bytes(our_dir) / N_KEYS
    print(f"\nbytes on disk per entry: DSPy {theirs:.0f}, turbodspy {ours:.0f} (ratio {theirs / ours:.2f}x)")
    assert ours <= theirs


WRITER = """
import json, os, sys, time
sys.path.insert(0, sys.argv[4])
from bench_disk_cache import request, dspy_value, our_record, IGNORED
lib, directory, me = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = int(os.environ["WRITES_EACH"])
if lib == "dspy":
    from dspy.clients.cache import Cache
    cache = Cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=directory,
                  disk_size_limit_bytes=30 * 1024**3)
    values = [dspy_value(n) for n in range(count)]
    def put(n):
        cache.put(request(n, f"w{me}"), values[n], IGNORED)
else:
    from turbodspy._core import request_key
    from turbodspy.clients.disk_cache import DiskCache
    cache = DiskCache(directory)
    values = [our_record(n) for n in range(count)]
    def put(n):
        cache.put(request_key(request(n, f"w{me}"), IGNORED), values[n])
print("ready", flush=True)
sys.stdin.readline()
start = time.time()
latencies = []
for n in range(count):
    t = time.perf_counter()
    put(n)
    latencies.append(time.perf_counter() - t)
print(json.dumps({"start": start, "end": time.time(), "latencies": latencies}), flush=True)
"""


def _start_writers(lib: str, directory: Path) -> list[subprocess.Popen]:
    """Starts the writers and waits until each has imported and built its values (not timed)."""
    env = {**os.environ, "WRITES_EACH": str(WRITES_EACH), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, lib, str(directory), str(me), str(Path(__file__).parent)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for me in range(WRITERS)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    return procs


def _run_writers(procs: list[subprocess.Popen]) -> dict:
    """Starts every writer at once and waits for all of them (timed)."""
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    reports = [json.loads(p.communicate(timeout=1800)[0]) for p in procs]
    latencies = sorted(x for r in reports for x in r["latencies"])
    return {
        "write_phase_s": max(r["end"] for r in reports) - min(r["start"] for r in reports),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "max_ms": 1000 * latencies[-1],
        "writes": len(latencies),
    }


@pytest.mark.parametrize("lib", ["dspy", "turbodspy"])
def test_eight_processes_writing(benchmark, tmp_path, lib):
    benchmark.group = f"{WRITERS} processes x {WRITES_EACH} writes, one directory (all done)"
    result = {}
    benchmark.pedantic(
        lambda procs: result.update(_run_writers(procs)),
        setup=lambda: ((_start_writers(lib, tmp_path / lib),), {}),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(result)
    print(
        f"\n{lib}: {result['writes']} writes in {result['write_phase_s']:.2f}s, p50 {result['p50_ms']:.3f} ms, "
        f"p99 {result['p99_ms']:.3f} ms, max {result['max_ms']:.1f} ms"
    )
    assert result["writes"] == WRITERS * WRITES_EACH
    # Every write landed: a fresh reader finds a sample of each writer's entries.
    if lib == "turbodspy":
        from turbodspy._core import request_key
        from turbodspy.clients.disk_cache import DiskCache

        cache = DiskCache(tmp_path / lib)
        assert cache.stats()["entries"] == WRITERS * WRITES_EACH
        assert all(
            cache.get(request_key(request(n, f"w{me}"), IGNORED)) == our_record(n)
            for me in range(WRITERS)
            for n in range(0, WRITES_EACH, 500)
        )
    else:
        from dspy.clients.cache import Cache

        cache = Cache(
            enable_disk_cache=True,
            enable_memory_cache=False,
            disk_cache_dir=str(tmp_path / lib),
            disk_size_limit_bytes=LIMIT,
        )
        assert all(
            cache.get(request(n, f"w{me}"), IGNORED) == dspy_value(n)
            for me in range(WRITERS)
            for n in range(0, WRITES_EACH, 500)
        )


# --- first cached call in a fresh process ------------------------------------------------------------------

FIRST_CALL = """
import json, sys, time
t0 = time.perf_counter()
import {module} as dspy
dspy.configure_cache(disk_cache_dir=sys.argv[2])
lm = dspy.LM("openai/gpt-4o-mini", api_base=sys.argv[1], api_key="sk-bench-0000000000", temperature=0.7)
t1 = time.perf_counter()
out = lm("Say this is a test!")
t2 = time.perf_counter()
print(json.dumps({{"setup_s": t1 - t0, "first_call_s": t2 - t1, "litellm": "litellm" in sys.modules, "out": out}}))
"""


def _run_fresh(code: str, *args: object) -> dict:
    """Run `code` in a new interpreter (offline, quiet); its last line of output is a JSON result."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONWARNINGS": "ignore"}
    # Each starts with the disk quiet: writeback of earlier writes (the 8-process benchmark's, a fill's) would
    # otherwise take CPU from whichever library's process happens to run meanwhile.
    os.sync()
    run = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600, env=env
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def _first_call(module: str, base: str, cache_dir: Path) -> dict:
    return _run_fresh(FIRST_CALL.format(module=module), base, cache_dir)


@pytest.fixture(scope="module")
def llm_server():
    from turbodspy.testing import LocalLLMServer

    with LocalLLMServer() as server:
        yield server


@pytest.mark.parametrize("module", ["dspy", "turbodspy"])
def test_first_cached_call_in_a_fresh_process(benchmark, llm_server, tmp_path, module):
    benchmark.group = "fresh process: import, LM(...), first lm(prompt) served from the disk cache"
    cache_dir = tmp_path / module
    filled = _first_call(module, llm_server.openai_base, cache_dir)  # the one real call, which fills the cache
    calls = []

    def run():
        calls.append(_first_call(module, llm_server.openai_base, cache_dir))

    benchmark.pedantic(run, rounds=7, iterations=1)
    assert all(c["out"] == filled["out"] for c in calls), "a cached answer differs from the original"
    first = statistics.median(c["first_call_s"] for c in calls)
    benchmark.extra_info.update(
        first_call_ms=1000 * first,
        setup_ms=1000 * statistics.median(c["setup_s"] for c in calls),
        imported_litellm=any(c["litellm"] for c in calls),
    )
    print(f"\n{module}: first cached call {1000 * first:.2f} ms, litellm imported: {calls[-1]['litellm']}")


# --- disk hits as a user meets them: lm(prompt) in a fresh process ---------------------------------------------

FRESH_HITS = """
import hashlib, json, statistics, sys, time
dspy = __import__(sys.argv[1])
dspy.configure_cache(disk_cache_dir=sys.argv[3])  # each library's defaults otherwise: the memory tier is on
lm = dspy.LM("openai/gpt-4o-mini", api_base=sys.argv[2], api_key="sk-bench-0000000000", temperature=0.7)
prompts = [f"Question {i}: what is {i} plus {i}? Answer with the number only." for i in range(int(sys.argv[4]))]
times, answers = [], hashlib.sha256()
clock = time.perf_counter_ns
for prompt in prompts:
    start = clock()
    out = lm(prompt)
    times.append(clock() - start)
    answers.update(json.dumps(out).encode())
print(json.dumps({"median_us": statistics.median(times) / 1000, "mean_us": statistics.mean(times) / 1000,
                  "answers": answers.hexdigest(), "litellm": "litellm" in sys.modules}))
"""

_fresh_hits: dict[str, dict] = {}


def _fresh_hits_run(module: str, base: str, cache_dir: Path) -> dict:
    return _run_fresh(FRESH_HITS, module, base, cache_dir, N_KEYS)


@pytest.mark.parametrize("module", ["dspy", "turbodspy"])
def test_disk_hits_through_lm_in_a_fresh_process(benchmark, llm_server, tmp_path, module):
    # A first process fills the cache through the server; each timed process is new, so every one of its
    # 2,000 calls finds its memory tier empty and is answered from disk. The median is per call.
    benchmark.group = "fresh process: lm(prompt) answered from disk, memory tier empty (per call, 2,000 keys)"
    cache_dir = tmp_path / module
    filled = _fresh_hits_run(module, llm_server.openai_base, cache_dir)
    requests_after_fill = len(llm_server.model_requests)
    runs = []
    benchmark.pedantic(lambda: runs.append(_fresh_hits_run(module, llm_server.openai_base, cache_dir)), rounds=3)
    assert len(llm_server.model_requests) == requests_after_fill, "a fresh process sent a request"
    assert all(r["answers"] == filled["answers"] for r in runs), "a cached answer differs from the original"
    median = statistics.median(r["median_us"] for r in runs)
    benchmark.extra_info.update(median_call_us=median, imported_litellm=any(r["litellm"] for r in runs))
    _fresh_hits[module] = {"median": median, "answers": filled["answers"]}
    print(f"\n{module}: median disk hit through lm(prompt) {median:.2f} us, litellm imported: {runs[-1]['litellm']}")
    if len(_fresh_hits) == 2:
        ours, theirs = _fresh_hits["turbodspy"], _fresh_hits["dspy"]
        assert ours["answers"] == theirs["answers"], "the libraries answered differently"
        print(
            f"[disk hit via lm()] turbodspy {ours['median']:.2f} us, dspy {theirs['median']:.2f} us: "
            f"{theirs['median'] / ours['median']:.1f}x"
        )


ALTERNATING_ROUNDS = 7


def test_disk_hits_through_lm_in_alternating_fresh_processes(benchmark, llm_server, tmp_path):
    """The ratio above, measured so that a drift in the machine's speed falls on both libraries alike: fresh
    processes of each in turn (neither always first), the ratio of each library's median over the rounds."""
    dirs = {module: tmp_path / module for module in ("dspy", "turbodspy")}
    filled = {module: _fresh_hits_run(module, llm_server.openai_base, d) for module, d in dirs.items()}
    assert filled["dspy"]["answers"] == filled["turbodspy"]["answers"], "the libraries answered differently"
    medians: dict[str, list[float]] = {"dspy": [], "turbodspy": []}
    for round_number in range(ALTERNATING_ROUNDS):
        for module in ("dspy", "turbodspy") if round_number % 2 == 0 else ("turbodspy", "dspy"):
            run = _fresh_hits_run(module, llm_server.openai_base, dirs[module])
            assert run["answers"] == filled[module]["answers"], "a cached answer differs from the original"
            assert not run["litellm"] or module == "dspy", "a disk hit imported LiteLLM"
            medians[module].append(run["median_us"])
    ours, theirs = (statistics.median(medians[m]) for m in ("turbodspy", "dspy"))
    benchmark.group = "fresh process: lm(prompt) from disk, alternating rounds"
    benchmark.extra_info.update(median_call_us_turbodspy=ours, median_call_us_dspy=theirs, rounds=ALTERNATING_ROUNDS)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    rounds = ", ".join(f"{d / t:.1f}" for d, t in zip(medians["dspy"], medians["turbodspy"], strict=True))
    print(
        f"\n[disk hit via lm(), {ALTERNATING_ROUNDS} alternating rounds] turbodspy {ours:.2f} us, "
        f"dspy {theirs:.2f} us: {theirs / ours:.1f}x (each round's ratio {rounds})"
    )
