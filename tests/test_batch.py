"""Module.batch / Parallel / asyncify on real threads and a real event loop, with programs that need no LM."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
import weakref

import pytest

import turbodspy as dspy
from turbodspy.primitives.parallel import BatchCancelledError


class Square(dspy.Module):
    """A sync-only program: squares x, records which thread ran it and what `settings.lm` it saw."""

    def __init__(self):
        super().__init__()
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def forward(self, x):
        with self.lock:
            self.threads.add(threading.current_thread().name)
        if x < 0:
            raise ValueError(f"negative: {x}")
        time.sleep(0.001)
        return dspy.Prediction(y=x * x, lm=dspy.settings.lm)


class AsyncSquare(dspy.Module):
    """An async-capable program that counts how many of its calls are in flight at once."""

    def __init__(self, delay=0.02):
        super().__init__()
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0

    def forward(self, x):
        return dspy.Prediction(y=x * x, path="sync")

    async def aforward(self, x):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if x < 0:
                raise ValueError(f"negative: {x}")
            return dspy.Prediction(y=x * x, path="async", lm=dspy.settings.lm)
        finally:
            self.in_flight -= 1


def examples(xs):
    return [dspy.Example(x=x, label=x * x).with_inputs("x") for x in xs]


def test_threaded_batch_keeps_order_uses_threads_and_caller_context():
    program = Square()
    with dspy.context(lm="the-callers-lm"):
        results = program.batch(examples(range(200)), num_threads=4, disable_progress_bar=True)
    assert [r.y for r in results] == [x * x for x in range(200)]
    assert {r.lm for r in results} == {"the-callers-lm"}
    assert len(program.threads) > 1
    assert all(name.startswith("turbodspy-batch") for name in program.threads - {threading.current_thread().name})


def test_busy_items_complete_and_waiting_items_get_all_threads():
    class Busy(dspy.Module):
        def __init__(self):
            super().__init__()
            self.threads = set()

        def forward(self, x):
            self.threads.add(threading.current_thread().name)
            deadline = time.thread_time() + 0.002
            while time.thread_time() < deadline:
                pass
            return dspy.Prediction(y=x)

    busy = Busy()
    assert [r.y for r in busy.batch(examples(range(100)), num_threads=8, disable_progress_bar=True)] == list(range(100))
    waiting = Square()
    waiting.batch(examples(range(100)), num_threads=8, disable_progress_bar=True)
    assert len(waiting.threads) == 8


def test_waiting_items_get_all_threads_while_another_thread_keeps_the_process_busy():
    # The watcher looks at the CPU time of the thread running items, not the whole process'.
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        waiting = Square()  # each item sleeps 1 ms
        # Enough items that the last thread to start, on a loaded machine, still finds some left.
        waiting.batch(examples(range(300)), num_threads=8, disable_progress_bar=True)
    finally:
        stop.set()
        spinner.join()
    assert len(waiting.threads) == 8


def test_one_thread_runs_in_the_caller_thread():
    program = Square()
    results = program.batch(examples(range(5)), num_threads=1, disable_progress_bar=True)
    assert [r.y for r in results] == [0, 1, 4, 9, 16]
    assert program.threads == {threading.current_thread().name}


def test_failed_examples_are_collected_and_others_still_run():
    program = Square()
    data = examples([1, -2, 3, -4, 5])
    results, failed, errors = program.batch(
        data, num_threads=3, max_errors=10, return_failed_examples=True, disable_progress_bar=True
    )
    assert [r.y if r else None for r in results] == [1, None, 9, None, 25]
    assert [ex.x for ex in failed] == [-2, -4]
    assert [str(e) for e in errors] == ["negative: -2", "negative: -4"]


def test_parallel_reports_the_examples_it_was_given_and_batch_their_inputs():
    program = Square()
    data = examples([1, -2])
    _, failed, _ = dspy.Parallel(num_threads=2, return_failed_examples=True, disable_progress_bar=True)(
        [(program, ex) for ex in data]
    )
    assert [dict(ex) for ex in failed] == [{"x": -2, "label": 4}]  # labels kept, as DSPy's Parallel
    _, failed, _ = program.batch(data, num_threads=2, return_failed_examples=True, disable_progress_bar=True)
    assert [dict(ex) for ex in failed] == [{"x": -2}]  # inputs, as DSPy's batch


@pytest.mark.parametrize("path", [{"num_threads": 4}, {"concurrency": 4}])
def test_reaching_max_errors_raises_without_waiting_for_items_still_running(path):
    release, started, finished = threading.Event(), [], []

    class SlowUnlessFirst(dspy.Module):
        def forward(self, x):
            if x == 0:
                time.sleep(0.1)  # long enough for the other items to start
                raise ValueError("the first fails")
            started.append(x)
            release.wait(30)
            finished.append(x)
            return dspy.Prediction(y=x)

        async def aforward(self, x):
            if x == 0:
                await asyncio.sleep(0.1)
                raise ValueError("the first fails")
            started.append(x)
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)
            finished.append(x)
            return dspy.Prediction(y=x)

    outcome = {}

    def run():
        try:
            SlowUnlessFirst().batch(examples(range(4)), max_errors=1, disable_progress_bar=True, **path)
        except BaseException as e:
            outcome["error"] = e

    caller = threading.Thread(target=run, daemon=True)
    try:
        caller.start()
        caller.join(20)
        assert not caller.is_alive(), "the batch waited for the items still running"
        assert isinstance(outcome.get("error"), BatchCancelledError)
        assert sorted(started) == [1, 2, 3] and finished == []  # raised while the others were still running
    finally:
        release.set()


@pytest.mark.parametrize("path", [{"num_threads": 4}, {"concurrency": 4}])
def test_a_base_exception_from_an_item_reaches_the_caller_and_stops_the_run(path):
    ran = []

    class Exits(dspy.Module):
        def forward(self, x):
            ran.append(x)
            if x == 50:  # taken once the other workers run too
                raise SystemExit("stop everything")
            time.sleep(0.005)
            return dspy.Prediction(y=x)

        async def aforward(self, x):
            ran.append(x)
            if x == 50:
                raise SystemExit("stop everything")
            await asyncio.sleep(0.005)
            return dspy.Prediction(y=x)

    with pytest.raises(SystemExit):
        _finishes(lambda: Exits().batch(examples(range(400)), disable_progress_bar=True, **path))
    count = len(ran)
    time.sleep(0.1)
    assert len(ran) == count < 400  # nobody started another item after the call raised
    # The event loop survived it: the next async batch runs.
    assert [r.y for r in AsyncSquare(delay=0).batch(examples(range(3)), concurrency=2, disable_progress_bar=True)] == [
        0,
        1,
        4,
    ]


def test_a_system_exit_from_an_items_own_task_or_inner_batch_reaches_the_caller():
    from turbodspy.primitives.parallel import ParallelExecutor

    async def exits():
        raise SystemExit("from inside")

    class ChildTask(dspy.Module):
        async def aforward(self, x):
            if x == 1:
                await asyncio.gather(exits())  # a task of its own: the loop must survive it
            return dspy.Prediction(y=x)

    class InnerBatch(dspy.Module):
        async def aforward(self, x):
            async def item(i):
                if i == 1:
                    await exits()
                return i

            return dspy.Prediction(y=await ParallelExecutor(disable_progress_bar=True).aexecute(item, [0, 1], 2))

    for program in (ChildTask(), InnerBatch()):
        with pytest.raises(SystemExit, match="from inside"):
            _finishes(lambda program=program: program.batch(examples(range(3)), disable_progress_bar=True))
    assert [r.y for r in AsyncSquare(delay=0).batch(examples(range(2)), concurrency=2, disable_progress_bar=True)] == [
        0,
        1,
    ]


def test_batches_nested_across_loops_and_threads_do_not_deadlock():
    class Inner(dspy.Module):  # threads
        def forward(self, x):
            return dspy.Prediction(
                y=AsyncSquare(delay=0).batch(examples([x]), concurrency=1, disable_progress_bar=True)[0].y
            )

    class Mid(dspy.Module):  # async only, run on a private loop by Outer's item
        async def aforward(self, x):
            inner = Inner().batch(examples([x, x + 1]), num_threads=2, disable_progress_bar=True)
            return dspy.Prediction(y=sum(r.y for r in inner))

    class Outer(dspy.Module):  # async only, on the background loop
        async def aforward(self, x):
            return dspy.Prediction(y=Mid().batch(examples([x]), disable_progress_bar=True)[0].y)

    def many_times():  # a deadlock that needs threads to interleave just so shows within a few dozen runs
        return [Outer().batch(examples(range(2)), disable_progress_bar=True) for _ in range(50)]

    for results in _finishes(many_times):
        assert [r.y for r in results] == [1, 5]


def test_an_item_raising_cancelled_error_is_its_own_failure_not_a_lost_result():
    class CancelsItself(dspy.Module):
        async def aforward(self, x):
            if x == 1:
                raise asyncio.CancelledError()  # as a leaked cancel scope does
            return dspy.Prediction(y=x)

    results, failed, errors = CancelsItself().batch(
        examples(range(4)), concurrency=2, return_failed_examples=True, disable_progress_bar=True
    )
    assert [r.y if r else None for r in results] == [0, None, 2, 3]
    assert [ex.x for ex in failed] == [1] and isinstance(errors[0], asyncio.CancelledError)


def test_an_error_outside_an_item_is_raised_not_lost():
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("cannot describe the failure")

    class Breaks(dspy.Module):
        def forward(self, x):
            if x == 1:
                raise Unprintable()
            return dspy.Prediction(y=x)

    with pytest.raises(RuntimeError, match="cannot describe"):
        Breaks().batch(examples(range(6)), num_threads=2, disable_progress_bar=True)


def test_empty_input_gives_empty_results_on_every_path():
    assert AsyncSquare().batch([], concurrency=4, disable_progress_bar=True) == []
    assert Square().batch([], num_threads=4, disable_progress_bar=True) == []
    assert dspy.Parallel(concurrency=4)([]) == []


def test_user_lm_and_adapter_code_runs_in_a_batch():
    calls = []

    class MyLM(dspy.utils.DummyLM):
        def forward(self, prompt=None, messages=None, **kwargs):
            calls.append("lm")
            return super().forward(prompt=prompt, messages=messages, **kwargs)

    class MyAdapter(dspy.ChatAdapter):
        def __call__(self, *args, **kwargs):
            calls.append("adapter")
            return super().__call__(*args, **kwargs)

    data = [dspy.Example(question=f"q{i}").with_inputs("question") for i in range(4)]
    with dspy.context(lm=MyLM([{"answer": "a"}] * 10), adapter=MyAdapter()):
        results = dspy.Predict("question -> answer").batch(data, disable_progress_bar=True)
    assert [r.answer for r in results] == ["a"] * 4
    assert calls.count("lm") == 4 and calls.count("adapter") == 4


def test_a_thread_batch_inside_an_async_item_whose_items_run_async_batches_does_not_deadlock():
    class Inner(dspy.Module):
        def forward(self, x):
            inner = AsyncSquare(delay=0).batch(examples([x]), concurrency=1, disable_progress_bar=True)
            return dspy.Prediction(y=inner[0].y)

    class Outer(dspy.Module):
        async def aforward(self, x):
            inner = Inner().batch(examples([x, x + 1]), num_threads=2, disable_progress_bar=True)
            return dspy.Prediction(y=sum(r.y for r in inner))

    results = _finishes(lambda: Outer().batch(examples(range(3)), disable_progress_bar=True))
    assert [r.y for r in results] == [x * x + (x + 1) ** 2 for x in range(3)]


def test_max_errors_stops_the_run_with_a_typed_error():
    program = Square()
    with pytest.raises(BatchCancelledError, match="max_errors=2") as info:
        program.batch(examples([-1, -2, -3, -4] * 25), num_threads=2, max_errors=2, disable_progress_bar=True)
    assert isinstance(info.value.__cause__, ValueError)
    assert isinstance(info.value, dspy.DSPyError)


def test_a_users_async_capable_program_runs_on_threads_unless_concurrency_is_given():
    # Its `aforward` might block (sync I/O, time.sleep); on the one event loop that would hold up every item.
    program = AsyncSquare()
    with dspy.context(lm="ctx-lm"):
        by_default = program.batch(examples(range(20)), disable_progress_bar=True)
        on_the_loop = program.batch(examples(range(100)), concurrency=32, disable_progress_bar=True)
    assert {r.path for r in by_default} == {"sync"}  # as in DSPy
    assert [r.y for r in on_the_loop] == [x * x for x in range(100)]
    assert {r.path for r in on_the_loop} == {"async"} and {r.lm for r in on_the_loop} == {"ctx-lm"}
    assert program.max_in_flight == 32


def test_builtin_predict_runs_on_the_event_loop_by_default_with_num_threads_bounding_it():
    in_flight, peak = [0], [0]

    def counted(predict):
        acall = predict.acall

        async def wrapper(**kwargs):  # on the instance: what the batch awaits, Predict's own code otherwise
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            try:
                await asyncio.sleep(0.01)
                return await acall(**kwargs)
            finally:
                in_flight[0] -= 1

        predict.acall = wrapper
        return predict

    lm = dspy.utils.DummyLM([{"answer": "a"}] * 200)
    data = [dspy.Example(question=f"q{i}").with_inputs("question") for i in range(40)]
    with dspy.context(lm=lm):
        results = counted(dspy.Predict("question -> answer")).batch(data, disable_progress_bar=True)
        assert [r.answer for r in results] == ["a"] * 40 and peak[0] == 32
        peak[0] = 0
        with dspy.context(num_threads=3):  # a user limiting the load on a provider
            counted(dspy.Predict("question -> answer")).batch(data, disable_progress_bar=True)
        assert peak[0] == 3
        peak[0] = 0
        with dspy.context(callbacks=[dspy.utils.BaseCallback()]):  # a callback might block: threads
            counted(dspy.Predict("question -> answer")).batch(data, disable_progress_bar=True)
        assert peak[0] == 0


def test_a_forward_of_the_users_own_is_what_a_batch_runs():
    class Shouting(dspy.Predict):  # overrides forward only: the inherited aforward would skip it
        def forward(self, **kwargs):
            return dspy.Prediction(answer=super().forward(**kwargs).answer.upper())

    lm = dspy.utils.DummyLM([{"answer": "quiet"}] * 50)
    data = [dspy.Example(question=f"q{i}").with_inputs("question") for i in range(4)]
    with dspy.context(lm=lm):
        assert [r.answer for r in Shouting("question -> answer").batch(data, disable_progress_bar=True)] == [
            "QUIET"
        ] * 4
        patched = dspy.Predict("question -> answer")
        patched.forward = lambda **kwargs: dspy.Prediction(answer="patched")  # as optimizers patch modules
        assert not patched.supports_async()
        assert [r.answer for r in patched.batch(data, disable_progress_bar=True)] == ["patched"] * 4
        evaluated = dspy.Evaluate(devset=data, metric=lambda ex, pred, trace=None: pred.answer == "patched")
        assert evaluated(patched).score == 100.0
    cot = dspy.ChainOfThought("question -> answer")
    cot.predict = Shouting(cot.predict.signature)  # a user's module inside one of ours
    with dspy.context(lm=dspy.utils.DummyLM([{"reasoning": "r", "answer": "quiet"}] * 10)):
        assert [r.answer for r in cot.batch(data, disable_progress_bar=True)] == ["QUIET"] * 4


def test_concurrency_given_for_a_sync_program_runs_it_on_worker_threads():
    program = Square()
    results = program.batch(examples(range(6)), concurrency=4, disable_progress_bar=True)
    assert [r.y for r in results] == [x * x for x in range(6)]
    assert threading.current_thread().name not in program.threads
    score = dspy.Evaluate(devset=examples(range(6)), metric=lambda ex, pred: pred.y == ex.label, concurrency=4)
    assert score(program).score == 100.0


def test_sync_items_with_batches_of_their_own_finish_whatever_the_concurrency():
    # Each outer item holds a worker thread while its inner batch runs; with more outer items in flight than
    # there are pool threads, the inner items must still get threads.
    class Outer(dspy.Module):
        def forward(self, x):
            inner = Square().batch(examples([x, x + 1]), concurrency=2, disable_progress_bar=True)
            return dspy.Prediction(y=sum(r.y for r in inner))

    results = _finishes(lambda: Outer().batch(examples(range(80)), concurrency=80, disable_progress_bar=True))
    assert [r.y for r in results] == [x * x + (x + 1) ** 2 for x in range(80)]


def test_a_wide_batch_of_a_sync_program_shares_the_worker_threads_instead_of_starting_its_own():
    class Slow(Square):
        def forward(self, x):
            time.sleep(0.02)  # all 150 are in flight at once
            return super().forward(x)

    program = Slow()
    results = program.batch(examples(range(150)), concurrency=150, disable_progress_bar=True)
    assert [r.y for r in results] == [x * x for x in range(150)]
    assert all(name.startswith("turbodspy-worker_") for name in program.threads)
    assert len(program.threads) <= 64


def test_cancelled_calls_give_their_worker_thread_back():
    from turbodspy.primitives import parallel

    async def main():
        for _ in range(50):  # a batch stopping its other items, or a wait_for timing out
            tasks = [asyncio.ensure_future(parallel.run_on_worker_thread(time.sleep, 0.005)) for _ in range(40)]
            await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        def nested_call_thread():  # from inside a worker call, as an item of a nested batch makes it
            return asyncio.run(parallel.run_on_worker_thread(lambda: threading.current_thread().name))

        return await parallel.run_on_worker_thread(nested_call_thread)

    # Had the cancelled calls kept their places, the pool would look full and the call get a thread of its own.
    assert asyncio.run(main()).startswith("turbodspy-worker_")
    # Every slot comes back once the calls already running finish (an earlier test's may still be running).
    deadline = time.monotonic() + 5
    while parallel._busy_workers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert parallel._busy_workers == 0


def test_concurrency_bounds_in_flight_and_errors_are_collected_on_the_async_path():
    program = AsyncSquare()
    results, failed, errors = program.batch(
        examples([1, -1, 2, -2, 3, 4, 5, 6]), concurrency=3, return_failed_examples=True, disable_progress_bar=True
    )
    assert program.max_in_flight == 3
    assert [r.y if r else None for r in results] == [1, None, 4, None, 9, 16, 25, 36]
    assert [ex.x for ex in failed] == [-1, -2] and all(isinstance(e, ValueError) for e in errors)


def test_explicit_threads_run_the_sync_path():
    results = AsyncSquare().batch(examples(range(4)), num_threads=2, disable_progress_bar=True)
    assert {r.path for r in results} == {"sync"}


def test_batch_from_inside_a_running_event_loop_runs_items_off_the_loops_thread():
    # Jupyter cells and async apps call batch with a loop running; an item may start a loop of its own.
    class UsesAsyncio(dspy.Module):
        def forward(self, x):
            return dspy.Prediction(y=asyncio.run(asyncio.sleep(0, result=x * x)), lm=dspy.settings.lm)

    async def main():
        with dspy.context(lm="inner"):
            one = UsesAsyncio().batch(examples(range(3)), num_threads=1, disable_progress_bar=True)
            return one + UsesAsyncio().batch(examples(range(10)), disable_progress_bar=True)

    results = asyncio.run(main())
    assert [r.y for r in results] == [x * x for x in [*range(3), *range(10)]]
    assert {r.lm for r in results} == {"inner"}


def test_requests_per_minute_spaces_starts():
    starts = []

    class Stamp(dspy.Module):
        def forward(self, x):
            starts.append(time.monotonic())
            return dspy.Prediction(x=x)

    Stamp().batch(examples(range(4)), num_threads=4, requests_per_minute=600, disable_progress_bar=True)
    starts.sort()
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(starts))
    with pytest.raises(ValueError, match="requests_per_minute"):
        Stamp().batch(examples(range(2)), requests_per_minute=-1, disable_progress_bar=True)


def test_items_do_not_see_each_others_context_changes():
    seen = []

    class Leaky(dspy.Module):
        def forward(self, x):
            seen.append(dspy.settings.get("leak"))
            dspy.settings.context(leak=x).__enter__()  # never exited on purpose
            return dspy.Prediction(x=x)

    Leaky().batch(examples(range(6)), num_threads=1, disable_progress_bar=True)
    assert seen == [None] * 6


def test_parallel_accepts_dicts_tuples_and_examples(capsys):
    program = Square()
    pairs = [(program, {"x": 2}), (program, (3,)), (program, dspy.Example(x=4, label=0).with_inputs("x"))]
    results = dspy.Parallel(num_threads=2)(pairs)
    assert [r.y for r in results] == [4, 9, 16]
    out = capsys.readouterr().out
    assert "Processed 3 / 3 examples" in out and "it/s" in out
    with pytest.raises(BatchCancelledError):
        dspy.Parallel(num_threads=1, max_errors=1, disable_progress_bar=True)([(program, 5)])


def test_asyncify_runs_sync_program_on_a_worker_thread_with_context():
    program = Square()

    async def main():
        fn = dspy.asyncify(program)
        with dspy.context(lm="async-ctx"):
            return await asyncio.gather(*(fn(x=i) for i in range(10)))

    results = asyncio.run(main())
    assert [r.y for r in results] == [i * i for i in range(10)] and {r.lm for r in results} == {"async-ctx"}
    assert threading.current_thread().name not in program.threads


def _finishes(fn, timeout=60):
    """Run fn on a thread and return its result or raise its exception; fail (instead of hanging the suite) if it
    deadlocks."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "deadlocked"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_batch_inside_an_async_batch_item_does_not_deadlock():
    class Outer(dspy.Module):
        async def aforward(self, x):
            inner = AsyncSquare(delay=0).batch(examples([x, x + 1]), disable_progress_bar=True)
            return dspy.Prediction(y=sum(r.y for r in inner))

    results = _finishes(lambda: Outer().batch(examples(range(5)), disable_progress_bar=True))
    assert [r.y for r in results] == [x * x + (x + 1) ** 2 for x in range(5)]


def test_async_batch_works_in_a_forked_child():
    import multiprocessing

    AsyncSquare().batch(examples(range(3)), disable_progress_bar=True)  # the parent's loop is running now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        ys = pool.apply_async(_child_batch).get(timeout=60)
    assert ys == [0, 1, 4, 9]


def _child_batch():
    return [r.y for r in AsyncSquare(delay=0).batch(examples(range(4)), disable_progress_bar=True)]


class Echo(dspy.Module):
    """Returns the keyword arguments it was called with, in order (sync and async)."""

    def forward(self, **kwargs):
        return list(kwargs.items())

    async def aforward(self, **kwargs):
        return list(kwargs.items())


@pytest.mark.parametrize("num_threads", [None, 1])  # the async path, then the threaded one
def test_programs_get_exactly_the_inputs_of_each_example(num_threads):
    examples = [
        dspy.Example(b="2", a="1", label="x").with_inputs("a", "b"),  # record order, not with_inputs order
        dspy.Example(question="q", answer="a").with_inputs("question"),
        dspy.Example(answer="a").with_inputs("question"),  # the input is missing from the record
        dspy.Example(dspy_uuid="u", question="q").with_inputs("dspy_uuid"),  # internal fields never go in
    ]
    expected = [list(ex.inputs().items()) for ex in examples]
    assert Echo().batch(examples, num_threads=num_threads, disable_progress_bar=True) == expected
    assert expected[0] == [("b", "2"), ("a", "1")] and expected[2] == [] and expected[3] == []


class _Cycle:
    def __init__(self) -> None:
        self.me = self


class _Collect(dspy.Module):
    """Runs a full collection, then reports whether anything is frozen and whether `self.watched` is alive."""

    def forward(self, x):
        gc.collect()
        return (gc.get_freeze_count() > 0, self.watched() is not None)

    async def aforward(self, x):
        return self.forward(x)


@pytest.mark.parametrize("num_threads", [None, 1])
def test_objects_from_before_a_batch_are_left_to_after_it_by_full_collections(num_threads):
    program = _Collect()
    gc.disable()  # no automatic collection may find the garbage below before the batch starts
    try:
        cycle = _Cycle()
        program.watched = weakref.ref(cycle)
        del cycle  # garbage now, but only a collection can find it
        results = program.batch([{"x": 1}, {"x": 2}], num_threads=num_threads, disable_progress_bar=True)
    finally:
        gc.enable()
    assert results == [(True, True), (True, True)]  # frozen: even a full collection leaves it alone
    assert gc.get_freeze_count() == 0  # nothing stays frozen after the batch
    gc.collect()
    assert program.watched() is None  # and the garbage from before is collected as usual


def test_a_program_that_froze_objects_itself_keeps_them_frozen_after_a_batch():
    program = _Collect()
    kept = _Cycle()  # what a pre-forking server freezes before it forks its workers
    program.watched = weakref.ref(kept)
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        del kept  # garbage now, but frozen: no collection may free it while it stays frozen
        assert program.batch([{"x": 1}], num_threads=1, disable_progress_bar=True) == [(True, True)]
        gc.collect()
        assert program.watched() is not None  # the batch did not unfreeze it
        # Nor froze more (frozen objects that lost their last reference meanwhile were freed as usual).
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
