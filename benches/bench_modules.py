"""Modules and batch runs, turbodspy vs DSPy 3.4.1 side by side against the same local LLM server.

Each scenario runs both libraries on the same program and inputs, checks their answers agree, then times them
and prints the ratio. Run with `make bench` (or `pytest benches/bench_modules.py --benchmark-enable -s`).
Targets (issue 6): Predict and ChainOfThought memory-cache hit >= 20x; cached batch of 20,000 calls over 2,000
questions >= 20x on 1 thread, and on 8 threads no slower than our 1 thread; uncached batch of 1,000 calls against
a server with 200 ms latency >= 3x calls/s with each library's defaults (and >= 90% of the ideal rate for our
concurrency), timed after one warm-up call per library (its cold time is printed); peak memory of the 20,000-call
batch <= half of DSPy's; a fresh process running a disk-cached batch of 2,000 calls >= 10x, start-up included.
"""

from __future__ import annotations

import compileall
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import turbodspy
from turbodspy.testing import LocalLLMServer

dspy = pytest.importorskip("dspy")

LIBS = {"turbodspy": turbodspy, "dspy": dspy}
QUESTIONS = 2_000
CALLS = 20_000
ALTERNATING_ROUNDS = 7
_timings: dict[str, dict[str, float]] = {}
_answers_by_scenario: dict[str, dict[str, list[Any]]] = {}


def _memory_only_caches() -> None:
    turbodspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)


class _ServerProcess:
    """A LocalLLMServer in its own process, so its request handling does not compete for our GIL."""

    def __init__(self, latency: float = 0.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, latency), daemon=True)

    def __enter__(self) -> _ServerProcess:
        self._process.start()
        self.openai_base = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._process.join(10)


def _serve(conn: Any, latency: float) -> None:
    with LocalLLMServer(latency=latency) as server:
        conn.send(server.openai_base)
        conn.recv()


@pytest.fixture(scope="module")
def server() -> Iterator[_ServerProcess]:
    _memory_only_caches()
    with _ServerProcess() as s:
        yield s


def _lm(lib: Any, server: Any, **kwargs: Any) -> Any:
    return lib.LM("openai/bench-model", api_base=server.openai_base, api_key="local", **kwargs)


def _report(scenario: str, library: str, seconds: float, unit: str = "s", higher_is_better: bool = False) -> None:
    """Keep each library's number; once both are in, print the ratio (how many times better turbodspy is)."""
    pair = _timings.setdefault(scenario, {})
    pair[library] = seconds
    if len(pair) == 2:
        ours, theirs = pair["turbodspy"], pair["dspy"]
        ratio = ours / theirs if higher_is_better else theirs / ours
        print(f"\n[{scenario}] turbodspy {ours:.4g} {unit}, dspy {theirs:.4g} {unit}: {ratio:.1f}x")


def _check_answers_agree(scenario: str, library: str, results: list[Any]) -> None:
    """Both libraries must give the same answers for the same inputs (checked once both have run)."""
    pair = _answers_by_scenario.setdefault(scenario, {})
    pair[library] = [r.answer if r is not None else None for r in results]
    if len(pair) == 2:
        assert pair["turbodspy"] == pair["dspy"]


# -- one call, memory-cache hit -------------------------------------------------------------------------------


def _cache_hit_case(server: Any, module: str) -> dict[str, Callable[[], Any]]:
    calls = {}
    for name, lib in LIBS.items():
        program = getattr(lib, module)("question -> answer")
        lm = _lm(lib, server)

        def call(program: Any = program, lm: Any = lm, lib: Any = lib) -> Any:
            with lib.context(lm=lm):
                return program(question="How many floors are in the castle David Gregory inherited?")

        call()  # fill the cache
        calls[name] = call
    assert calls["turbodspy"]().toDict() == calls["dspy"]().toDict()
    return calls


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
@pytest.mark.parametrize("module", ["Predict", "ChainOfThought"])
def test_cache_hit(benchmark, server, module: str, library: str) -> None:
    call = _cache_hit_case(server, module)[library]
    benchmark.group = f"{module}-memory-cache-hit"
    benchmark(call)
    _report(f"{module} cache hit (median per call)", library, benchmark.stats.stats.median * 1e6, "us")


# -- cached batch: 20,000 calls over 2,000 questions ----------------------------------------------------------


def _examples(lib: Any, n: int, distinct: int) -> list[Any]:
    return [lib.Example(question=f"Question number {i % distinct}: what is {i % distinct} + 1?") for i in range(n)]


@pytest.fixture(scope="module")
def warm_programs(server) -> dict[str, tuple[Any, Any]]:
    """Each library's Predict and LM with the 2,000 distinct questions already in its memory cache."""
    programs = {}
    for name, lib in LIBS.items():
        program, lm = lib.Predict("question -> answer"), _lm(lib, server)
        data = [ex.with_inputs("question") for ex in _examples(lib, QUESTIONS, QUESTIONS)]
        with lib.context(lm=lm):
            program.batch(data, num_threads=8, disable_progress_bar=True)
        programs[name] = (program, lm)
    return programs


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
@pytest.mark.parametrize("threads", [1, 8])
def test_cached_batch(benchmark, warm_programs, threads: int, library: str) -> None:
    lib = LIBS[library]
    program, lm = warm_programs[library]
    data = [ex.with_inputs("question") for ex in _examples(lib, CALLS, QUESTIONS)]

    def run() -> list[Any]:
        with lib.context(lm=lm):
            return program.batch(data, num_threads=threads, disable_progress_bar=True)

    benchmark.group = f"cached-batch-20000-calls-{threads}-threads"
    results = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    _check_answers_agree(f"cached-{threads}", library, results)
    calls_per_second = CALLS / benchmark.stats.stats.median
    _report(f"cached batch, {threads} thread(s)", library, calls_per_second, "calls/s", higher_is_better=True)


def test_cached_batch_eight_threads_against_one(benchmark, warm_programs) -> None:
    """Our 8-thread batch against our 1-thread batch, in alternating rounds, so a drift in the machine's speed
    (which one round each, minutes apart, does not survive) falls on both alike; the ratio of the medians."""
    program, lm = warm_programs["turbodspy"]
    data = [ex.with_inputs("question") for ex in _examples(turbodspy, CALLS, QUESTIONS)]
    seconds: dict[int, list[float]] = {1: [], 8: []}
    for round_number in range(ALTERNATING_ROUNDS):
        for threads in (1, 8) if round_number % 2 == 0 else (8, 1):  # neither always goes first
            with turbodspy.context(lm=lm):
                started = time.perf_counter()
                results = program.batch(data, num_threads=threads, disable_progress_bar=True)
                seconds[threads].append(time.perf_counter() - started)
            _check_answers_agree(f"cached-{threads}", "turbodspy", results)
    one, eight = (statistics.median(seconds[t]) for t in (1, 8))
    benchmark.group = "cached-batch-20000-calls-8-threads-vs-1"
    benchmark.extra_info.update(median_1_thread_s=one, median_8_threads_s=eight, rounds=ALTERNATING_ROUNDS)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(
        f"\n[cached batch] turbodspy 8 threads / 1 thread over {ALTERNATING_ROUNDS} alternating rounds: "
        f"{one / eight:.3f} (medians {CALLS / eight:,.0f} vs {CALLS / one:,.0f} calls/s; "
        f"each round's ratio {', '.join(f'{a / b:.2f}' for a, b in zip(seconds[1], seconds[8], strict=True))})"
    )


# -- uncached batch against a slow server ---------------------------------------------------------------------


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
def test_uncached_batch_slow_server(benchmark, library: str) -> None:
    """Steady-state throughput of a batch: each library first makes one call (on a question outside the batch)
    that pays its one-time costs (importing LiteLLM, opening the provider client), timed and printed apart."""
    lib = LIBS[library]
    calls = 1_000
    with _ServerProcess(latency=0.2) as slow:
        program, lm = lib.Predict("question -> answer"), _lm(lib, slow, cache=False)
        data = [ex.with_inputs("question") for ex in _examples(lib, calls, calls)]
        warm_up = lib.Example(question="A warm-up question outside the batch?").with_inputs("question")

        def run(examples: list[Any]) -> list[Any]:
            with lib.context(lm=lm):
                return program.batch(examples, disable_progress_bar=True)  # each library's defaults

        started = time.perf_counter()
        assert run([warm_up])[0].answer
        cold = time.perf_counter() - started
        print(f"\n[uncached batch] {library} first call (cold, not in the timing): {cold:.2f} s")

        benchmark.group = "uncached-batch-1000-calls-200ms"
        cpu = time.process_time()
        results = benchmark.pedantic(run, args=(data,), rounds=1, iterations=1, warmup_rounds=0)
        cpu = time.process_time() - cpu
        # The batch's CPU time in this process (all threads): what the client side spends per call.
        print(f"\n[uncached batch] {library} CPU per call in this process: {cpu / calls * 1e3:.2f} ms")
    assert all(r is not None and r.answer for r in results)
    _check_answers_agree("uncached", library, results)
    rate = calls / benchmark.stats.stats.median
    _report("uncached batch, 200 ms server, defaults", library, rate, "calls/s", higher_is_better=True)
    if library == "turbodspy":
        from turbodspy.primitives.parallel import DEFAULT_ASYNC_CONCURRENCY

        ideal = DEFAULT_ASYNC_CONCURRENCY / 0.2
        print(f"\n[uncached batch] turbodspy at {rate / ideal:.0%} of the ideal {ideal:.0f} calls/s")


# -- peak memory of the 20,000-call cached batch ----------------------------------------------------------------

_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys, tracemalloc
    lib = __import__(sys.argv[1])
    from turbodspy.testing import LocalLLMServer
    lib.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    def examples(n, distinct):
        return [lib.Example(question=f"Question number {i % distinct}: what is {i % distinct} + 1?")
                .with_inputs("question") for i in range(n)]
    with LocalLLMServer() as server:
        lm = lib.LM("openai/bench-model", api_base=server.openai_base, api_key="local")
        program = lib.Predict("question -> answer")
        with lib.context(lm=lm):
            program.batch(examples(2000, 2000), num_threads=8, disable_progress_bar=True)
            data = examples(20000, 2000)
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            results = program.batch(data, num_threads=1, disable_progress_bar=True)
            peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"peak_bytes": peak - before, "n": len(results)}))
    """
)


def test_peak_memory_of_cached_batch(benchmark) -> None:
    """Peak Python memory (tracemalloc) above the start while each library runs the warm 20,000-call batch."""
    peaks = {}
    for library in ("turbodspy", "dspy"):
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, library], capture_output=True, text=True, check=True, timeout=900
        )
        peaks[library] = json.loads(out.stdout.strip().splitlines()[-1])
        assert peaks[library]["n"] == CALLS
    benchmark.group = "peak-memory"
    benchmark.extra_info.update(peaks)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    ours, theirs = peaks["turbodspy"]["peak_bytes"], peaks["dspy"]["peak_bytes"]
    print(
        f"\n[peak memory, 20,000-call batch] turbodspy {ours / 2**20:.1f} MiB, dspy {theirs / 2**20:.1f} MiB: "
        f"{theirs / max(ours, 1):.1f}x less"
    )


# -- fresh process, disk-cached batch of 2,000 calls (start-up included) --------------------------------------

_DISK_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    lib = __import__(sys.argv[1])
    lib.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=sys.argv[2])
    lm = lib.LM("openai/bench-model", api_base=sys.argv[3], api_key="local")
    data = [lib.Example(question=f"Disk question {i}: what is {i} + 1?").with_inputs("question") for i in range(2000)]
    with lib.context(lm=lm):
        results = lib.Predict("question -> answer").batch(data, disable_progress_bar=True)
    answers = [r.answer for r in results]
    print(json.dumps({"answers": hashlib.sha256(json.dumps(answers).encode()).hexdigest(), "n": len(answers)}))
    """
)


def _compile_bytecode(lib: Any) -> None:
    """Give the library's package the bytecode files that installing it with pip writes.

    DSPy comes from site-packages with its `.pyc` files; turbodspy runs from this checkout (an editable install),
    where none exist when PYTHONDONTWRITEBYTECODE is set, so each fresh process would compile every module from
    source. Both libraries start from compiled bytecode, as a user's installed copy does (a no-op for DSPy's).
    """
    compileall.compile_dir(os.path.dirname(lib.__file__), quiet=2)


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
def test_fresh_process_disk_cached_batch(benchmark, server, tmp_path_factory, library: str) -> None:
    _compile_bytecode(LIBS[library])
    cache_dir = str(tmp_path_factory.mktemp(f"disk-{library}"))
    command = [sys.executable, "-c", _DISK_SCRIPT, library, cache_dir, server.openai_base]
    warm = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])

    def run() -> dict[str, Any]:
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.splitlines()[-1])

    benchmark.group = "fresh-process-disk-cached-batch-2000"
    result = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    assert result == warm and result["n"] == 2000
    pair = _answers_by_scenario.setdefault("disk", {})
    pair[library] = result["answers"]
    if len(pair) == 2:
        assert pair["turbodspy"] == pair["dspy"]
    _report("fresh process, disk-cached batch of 2,000 (start-up included)", library, benchmark.stats.stats.median)
