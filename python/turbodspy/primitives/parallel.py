"""`ParallelExecutor`: runs one function over many items with bounded concurrency, on threads or on one event loop.

Shared by `Parallel`, `Module.batch` and `Evaluate`. Items run in copies of the caller's context, so
`turbodspy.context(...)` settings (LM, adapter, callbacks, usage tracker, active call id) hold inside every
worker: on threads each item gets its own copy; on the event loop each worker task has one, which the items it
runs in turn share (a `context(...)` block inside an item is undone when it exits, so only a context variable
an item sets and never resets carries over). Results keep the items' order; an item that raised gives
`None` and is recorded in `failed_indices` / `exceptions_map`. After `max_errors` failures the run stops and
raises `BatchCancelledError`. There is no global timeout: a slow item is waited for, never re-submitted.
On the event loop, once items are known to take a while, their launches are spread out (see `pacing`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import itertools
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from turbodspy.errors import DSPyError
from turbodspy.primitives.pacing import LaunchPacer
from turbodspy.settings import DEFAULT_CONFIG, settings
from turbodspy.settings import current as current_settings

logger = logging.getLogger(__name__)

DEFAULT_ASYNC_CONCURRENCY = 32
_WATCH_WINDOW = 0.01


def async_by_default(program: Any) -> bool:
    """Whether a batch runs `program` on the event loop when not told how: turbodspy's own modules as they come
    (`Predict`, `ChainOfThought`), calling turbodspy's own LMs and adapters, with no callbacks set; and programs
    that are async only (no `forward`). User code anywhere on the call's path (a `forward`, an LM or adapter
    subclass, a callback) may block (synchronous I/O, `time.sleep`), and on the one loop every other item would
    wait for it; on threads, where DSPy runs every batch, it cannot hold up the rest."""
    if not has_async_path(program):
        return False
    if type(program).forward is _module_forward():
        return True  # no sync path to run
    if not _ours(program):
        return False
    config = current_settings()
    if config["callbacks"] or (config["adapter"] is not None and not _ours(config["adapter"])):
        return False
    modules = [program, *(module for _, module in program.named_sub_modules())]
    if not all(_ours(module) for module in modules) or any(getattr(m, "callbacks", None) for m in modules):
        return False  # a user's module inside (a `Predict` subclass set on a ChainOfThought, say) or a callback
    lms = [config["lm"], *(getattr(module, "lm", None) for module in modules)]
    return all(lm is None or (_ours(lm) and not getattr(lm, "callbacks", None)) for lm in lms)


def has_async_path(program: Any) -> bool:
    """Whether `program` (a module, or any callable) runs asynchronously through `acall` (`supports_async`)."""
    supports_async = getattr(program, "supports_async", None)
    return callable(supports_async) and supports_async()


def _ours(obj: Any) -> bool:
    """Whether `obj`'s class is turbodspy's own (not a user's subclass, whose code may block)."""
    return type(obj).__module__.startswith("turbodspy.")


def _module_forward() -> Any:
    from turbodspy.primitives.module import Module

    return Module.forward


def default_async_concurrency() -> int:
    """Items in flight on the async path: `settings.num_threads` when it is configured to something other than
    its default (a user limiting the load on a provider), else `DEFAULT_ASYNC_CONCURRENCY`."""
    num_threads = settings.num_threads
    return DEFAULT_ASYNC_CONCURRENCY if num_threads == DEFAULT_CONFIG["num_threads"] else num_threads


_UNSET: Any = object()


_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_pid = 0
_loop_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's background event loop (started on first use, on a daemon thread) for async batch runs."""
    global _loop, _loop_thread, _loop_pid
    with _loop_lock:
        # A forked child inherits `_loop` but not the thread running it: it needs its own.
        # A loop whose thread died (it should not: items' errors are caught) would never run anything again.
        dead = _loop_thread is None or not _loop_thread.is_alive()
        if _loop is None or _loop.is_closed() or _loop_pid != os.getpid() or dead:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_serve, args=(loop,), name="turbodspy-event-loop", daemon=True)
            thread.start()
            _loop, _loop_thread, _loop_pid = loop, thread, os.getpid()
        return _loop


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """Run the background loop for good. A SystemExit or KeyboardInterrupt raised in any task (an item's child
    task, say) escapes `run_forever`; the task keeps it for whoever awaits it, and the loop serves on."""
    while not loop.is_closed():
        try:
            loop.run_forever()
            return
        except (SystemExit, KeyboardInterrupt):
            continue


def _on_background_loop() -> bool:
    return threading.current_thread() is _loop_thread and _loop_pid == os.getpid()


# How many synchronous waits the background loop's thread is in (a thread-path batch, or a private loop, started
# from an item on it). While it waits the loop runs nothing, so an async batch started anywhere, from any thread,
# must use a private loop instead.
_background_loop_blocked = 0


@contextlib.contextmanager
def _blocking_the_background_loop() -> Iterator[None]:
    """Around a synchronous wait: counts it when the waiting thread is the background loop's."""
    global _background_loop_blocked
    if not _on_background_loop():
        yield
        return
    with _loop_lock:
        _background_loop_blocked += 1
    try:
        yield
    finally:
        with _loop_lock:
            _background_loop_blocked -= 1


_frozen_depth = 0
_we_froze = False
_freeze_lock = threading.Lock()


@contextlib.contextmanager
def _objects_before_frozen() -> Iterator[None]:
    """Exempt every object that exists before a batch from the garbage collector's full passes during it.

    A process that imported LiteLLM holds over half a million objects, and each full collection walks all of
    them (a fifth of a second); a long batch creates enough objects to trigger many. Freezing (`gc.freeze`,
    undone by `gc.unfreeze` when the outermost batch ends) leaves those passes only the batch's own objects.
    Nothing is leaked: cycles among the frozen objects are collected after the batch as before. Batches freeze
    first thing (`Module.batch`, `Parallel`, the executor): a full pass that falls due while a batch sets up
    (as one does soon after LiteLLM's import) would otherwise stall its first items.
    """
    global _frozen_depth, _we_froze
    with _freeze_lock:
        if _frozen_depth == 0:
            # A program that froze objects itself (a pre-forking server does, to share memory with its workers)
            # keeps its own arrangement: unfreezing after the batch would undo it.
            _we_froze = gc.get_freeze_count() == 0
            if _we_froze:
                gc.freeze()
        _frozen_depth += 1
    try:
        yield
    finally:
        with _freeze_lock:
            _frozen_depth -= 1
            if _frozen_depth == 0 and _we_froze:
                gc.unfreeze()


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _cpu_clock(thread_ident: int | None) -> Callable[[], float]:
    """A clock of one thread's CPU time where the platform has one (POSIX), else of the whole process'."""
    try:
        clock_id = time.pthread_getcpuclockid(thread_ident)  # type: ignore[arg-type]
        time.clock_gettime(clock_id)
    except (AttributeError, OSError, TypeError):
        return time.process_time
    return lambda: time.clock_gettime(clock_id)


def _wait_for(thread: threading.Thread, cancelled: threading.Event) -> None:
    """Wait for `thread` unless the run is cancelled; in short steps, so the waiting thread sees a cancellation
    and Ctrl-C soon."""
    while thread.is_alive() and not cancelled.is_set():
        thread.join(0.05)


_WORKER_THREADS = 64
_workers: concurrent.futures.ThreadPoolExecutor | None = None
_workers_pid = 0
_busy_workers = 0  # calls handed to the pool and not finished (or cancelled) yet
# Set inside a call on a worker thread, and so in the contexts of the batches it starts.
_in_worker_call: contextvars.ContextVar[bool] = contextvars.ContextVar("turbodspy_in_worker_call", default=False)


async def run_on_worker_thread(function: Callable[..., Any], *args: Any) -> Any:
    """`await` a synchronous call on a shared worker thread, in a copy of the caller's context.

    A call from inside another worker call (an item of a batch started by an item of a batch) that finds every
    pool thread busy gets a thread of its own: the calls holding them may be waiting for this one, and queued
    behind them it would never run. Other calls wait for a pool thread."""
    global _workers, _workers_pid, _busy_workers
    ctx = contextvars.copy_context()
    ctx.run(_in_worker_call.set, True)
    with _loop_lock:
        if _workers is None or _workers_pid != os.getpid():
            _workers = concurrent.futures.ThreadPoolExecutor(
                max_workers=_WORKER_THREADS, thread_name_prefix="turbodspy-worker"
            )
            _workers_pid = os.getpid()  # a forked child's counts start afresh (`_after_fork_in_child`)
        pooled = _busy_workers < _WORKER_THREADS or not _in_worker_call.get()
        if pooled:
            _busy_workers += 1
    if not pooled:
        return await asyncio.wrap_future(_on_a_thread_of_its_own(lambda: ctx.run(function, *args)))
    try:
        future = _workers.submit(ctx.run, function, *args)
    except BaseException:
        _release_worker(None)
        raise
    future.add_done_callback(_release_worker)  # also when cancelled before a thread took it
    return await asyncio.wrap_future(future)


def _release_worker(_: concurrent.futures.Future | None) -> None:
    global _busy_workers
    with _loop_lock:
        _busy_workers -= 1


def _on_a_thread_of_its_own(call: Callable[[], Any]) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(call())
        except BaseException as e:  # handed to the awaiting task, as the pool does
            future.set_exception(e)

    threading.Thread(target=run, name="turbodspy-worker-extra", daemon=True).start()
    return future


def _after_fork_in_child() -> None:
    """A forked child has only the thread that forked: a lock another thread held stays held there, and counts
    of other threads' work count work that does not exist."""
    global _loop_lock, _busy_workers, _background_loop_blocked
    _loop_lock = threading.Lock()
    _busy_workers = 0
    _background_loop_blocked = 0


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class BatchCancelledError(DSPyError):
    """A batch stopped early: too many examples failed (see `max_errors`), or it was interrupted."""


class RateLimiter:
    """Spaces starts evenly so that at most `requests_per_minute` start in any minute (shared by all workers)."""

    def __init__(self, requests_per_minute: float) -> None:
        if not requests_per_minute or requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be a positive number, got {requests_per_minute!r}.")
        self.interval = 60.0 / requests_per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Claim the next start slot; returns how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
            return start - now

    def wait(self) -> None:
        delay = self._reserve()
        if delay > 0:
            time.sleep(delay)

    async def await_slot(self) -> None:
        delay = self._reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class _Progress:
    """The tqdm bar (with its items/s throughput), updated by whichever worker finishes an item."""

    def __init__(self, total: int, disable: bool, compare_results: bool) -> None:
        self.bar = None
        if not disable:  # a hidden bar shows nothing: tqdm is not even imported for it
            import tqdm

            self.bar = tqdm.tqdm(total=total, dynamic_ncols=True, file=sys.stdout)
        self.disabled = disable
        self.compare_results = compare_results
        self.total = total
        self.done = 0
        self.scored = 0  # items that gave a result: the average is over them, as DSPy's bar shows it
        self.score = 0.0

    def advance(self, outcome: Any) -> None:
        self.done += 1
        if self.compare_results and outcome is not None and not isinstance(outcome, BaseException):
            self.scored += 1
            try:
                self.score += outcome[-1]
            except TypeError:  # a metric that gave no number (None): the bar's average leaves it out
                self.scored -= 1
        if self.disabled:
            return
        if self.compare_results:
            pct = round(100 * self.score / self.scored, 1) if self.scored else 0
            self.bar.set_description(f"Average Metric: {self.score:.2f} / {self.scored} ({pct}%)", refresh=False)
        else:
            self.bar.set_description(f"Processed {self.done} / {self.total} examples", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ParallelExecutor:
    """Run `function(item)` for each item: `execute` on threads, `execute_async` on an event loop."""

    def __init__(
        self,
        num_threads: int | None = None,
        max_errors: int | None = None,
        disable_progress_bar: bool = False,
        provide_traceback: bool | None = None,
        compare_results: bool = False,
        timeout: float | None = None,
        straggler_limit: int = 3,
        requests_per_minute: float | None = None,
    ) -> None:
        self.num_threads = num_threads or settings.num_threads
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {self.num_threads}.")
        self.max_errors = settings.max_errors if max_errors is None else max_errors
        self.disable_progress_bar = disable_progress_bar
        self.provide_traceback = settings.provide_traceback if provide_traceback is None else provide_traceback
        self.compare_results = compare_results
        # Accepted for DSPy compatibility: slow items are never re-submitted or abandoned.
        self.timeout = timeout
        self.straggler_limit = straggler_limit
        self.rate_limiter = RateLimiter(requests_per_minute) if requests_per_minute else None

        self.error_count = 0
        self.error_lock = threading.Lock()
        self.cancel_jobs = threading.Event()
        # A SystemExit or the like from an item on the event loop: raised in the caller's thread, never in the
        # loop's (where it would stop the loop for good).
        self._fatal: BaseException | None = None
        self.failed_indices: list[int] = []
        self.exceptions_map: dict[int, BaseException] = {}
        self._first_error: BaseException | None = None

    # -- shared bookkeeping -------------------------------------------------------------------------------------

    def _record(self, results: list, index: int, item: Any, outcome: Any, error: BaseException | None) -> None:
        if error is None:
            results[index] = outcome
            return
        with self.error_lock:
            self.error_count += 1
            self.failed_indices.append(index)
            self.exceptions_map[index] = error
            if self._first_error is None:
                self._first_error = error
            if self.error_count >= self.max_errors:
                self.cancel_jobs.set()
        if self.provide_traceback:
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            logger.error(f"Error for {item}: {error}\n{tb}")
        else:
            logger.error(f"Error for {item}: {error}. Set `provide_traceback=True` for traceback.")

    def _finish(self, results: list) -> list:
        self.failed_indices.sort()
        if self.cancel_jobs.is_set():
            raise BatchCancelledError(
                f"Execution cancelled after {self.error_count} failed examples (max_errors={self.max_errors}); "
                f"the first error was: {self._first_error!r}. Fix the failing examples or raise `max_errors`."
            ) from self._first_error
        return [None if r is _UNSET else r for r in results]

    # -- threads ------------------------------------------------------------------------------------------------

    def execute(self, function: Callable[[Any], Any], data: Sequence[Any]) -> list[Any]:
        """Run `function` over `data` on `num_threads` threads (1: in the calling thread). Returns results."""
        with _objects_before_frozen():
            return self._execute(function, data)

    def _execute(self, function: Callable[[Any], Any], data: Sequence[Any]) -> list[Any]:
        data = list(data)
        results: list[Any] = [_UNSET] * len(data)
        parent = contextvars.copy_context()
        progress = _Progress(len(data), self.disable_progress_bar, self.compare_results)
        # Taking the next index needs no lock: `next()` on itertools.count is atomic under the GIL. With the
        # progress bar off, finishing an item takes no lock either, so cached items run without lock convoys.
        counter = itertools.count()
        total = len(data)
        progress_lock = threading.Lock() if not self.disable_progress_bar else None
        fatal: list[BaseException] = []

        def run_items() -> None:
            try:
                run_items_unguarded()
            except BaseException as e:  # outside an item (recording, progress): the run stops, the caller raises
                fatal.append(e)
                self.cancel_jobs.set()

        def run_items_unguarded() -> None:
            while not self.cancel_jobs.is_set():
                index = next(counter)
                if index >= total:
                    return
                if self.rate_limiter is not None:
                    self.rate_limiter.wait()
                    if self.cancel_jobs.is_set():
                        return
                item = data[index]
                outcome = error = None
                try:
                    outcome = parent.copy().run(function, item)
                except Exception as e:
                    error = e
                except BaseException as e:  # SystemExit and the like: the run stops and the caller raises it
                    fatal.append(e)
                    self.cancel_jobs.set()
                    return
                self._record(results, index, item, outcome, error)
                if progress_lock is None:
                    continue
                with progress_lock:
                    progress.advance(error if error is not None else outcome)

        try:
            with _blocking_the_background_loop():
                self._run_workers(run_items, total)
        except BaseException as e:
            self.cancel_jobs.set()  # no worker starts another item
            if isinstance(e, KeyboardInterrupt):
                logger.warning("SIGINT received. Cancelling.")
            raise
        finally:
            progress.close()
        if fatal:
            raise fatal[0]
        return self._finish(results)

    def _run_workers(self, run_items: Callable[[], None], total: int) -> None:
        """Run items on one worker thread, adding the other `num_threads - 1` once items wait; the caller waits.

        Extra threads only help while items wait (for the network, a sleep, a rate limit). Items that keep the
        interpreter busy (cache hits) run no faster on eight threads than on one, since they take turns holding
        the GIL, and switching between them costs time. So one thread starts alone, and a watcher adds the other
        workers as soon as that thread spends less than half of a 10 ms window on the CPU (waiting for the
        network, or for the GIL while other threads of the process run: more threads then do no harm). The caller only
        waits, so once the run is cancelled (`max_errors`) it raises at once, leaving the items still running
        to finish on their threads, which then exit. With one thread, items run on the caller's, unless an event
        loop runs there (Jupyter, an async app): items may start loops of their own (`asyncio.run`).
        """
        if (self.num_threads == 1 or total <= 1) and not _loop_running_here():
            run_items()
            return
        workers: list[threading.Thread] = []
        runner_cpu: list[Callable[[], float]] = []

        def start_worker(target: Callable[[], None]) -> threading.Thread:
            worker = threading.Thread(target=target, name=f"turbodspy-batch-{len(workers)}", daemon=True)
            worker.start()
            workers.append(worker)
            return worker

        def run_first_items() -> None:
            runner_cpu.append(_cpu_clock(threading.get_ident()))  # looked up by the thread itself, while it lives
            run_items()

        runner = start_worker(run_first_items)
        finished = threading.Event()

        def watch() -> None:
            last_wall, last_cpu = time.perf_counter(), None
            try:
                while not finished.wait(_WATCH_WINDOW):
                    if not runner_cpu:
                        continue  # the runner has not started yet
                    wall, cpu = time.perf_counter(), runner_cpu[0]()
                    if last_cpu is not None and cpu - last_cpu < 0.5 * (wall - last_wall):
                        for _ in range(min(self.num_threads, total) - 1):
                            start_worker(run_items)
                        return
                    last_wall, last_cpu = wall, cpu
            except OSError:  # the runner's clock went with it: it has finished
                return

        watcher = None
        if self.num_threads > 1 and total > 1:
            watcher = threading.Thread(target=watch, name="turbodspy-batch-watcher", daemon=True)
            watcher.start()
        try:
            _wait_for(runner, self.cancel_jobs)
        finally:
            finished.set()
            if watcher is not None:
                watcher.join()
        for worker in list(workers):
            _wait_for(worker, self.cancel_jobs)

    # -- async --------------------------------------------------------------------------------------------------

    def execute_async(
        self, afunction: Callable[[Any], Awaitable[Any]], data: Sequence[Any], concurrency: int | None = None
    ) -> list[Any]:
        """Run `await afunction(item)` over `data` with `concurrency` in flight, from synchronous code.

        The work runs on turbodspy's background event loop, which lives as long as the process, so async HTTP
        clients (LiteLLM's) and their connections are reused from one batch to the next.
        """
        with _objects_before_frozen():
            if _on_background_loop() or _background_loop_blocked:
                # A batch started from inside an async batch item: waiting here for our own loop would deadlock it.
                return self._execute_on_private_loop(afunction, data, concurrency)
            # The handle scheduling the coroutine copies this thread's context, so the caller's settings apply.
            future = asyncio.run_coroutine_threadsafe(
                self._aexecute_for_a_thread(afunction, data, concurrency), background_loop()
            )
            try:
                while True:
                    try:
                        # A timed wait keeps the calling thread responsive to Ctrl-C.
                        results = future.result(timeout=0.25)
                        break
                    except concurrent.futures.TimeoutError:
                        continue
            except KeyboardInterrupt:
                self.cancel_jobs.set()
                future.cancel()
                logger.warning("SIGINT received. Cancelling.")
                raise
            if self._fatal is not None:  # an item's SystemExit or the like, raised here rather than on the loop
                raise self._fatal
            return results

    def _execute_on_private_loop(
        self, afunction: Callable[[Any], Awaitable[Any]], data: Sequence[Any], concurrency: int | None
    ) -> list[Any]:
        box: dict[str, Any] = {}
        ctx = contextvars.copy_context()

        def runner() -> None:
            try:
                box["result"] = ctx.run(asyncio.run, self.aexecute(afunction, data, concurrency))
            except BaseException as e:
                box["error"] = e

        thread = threading.Thread(target=runner, name="turbodspy-nested-batch", daemon=True)
        # Counted before the thread starts: an async batch its items start must already see the loop blocked.
        with _blocking_the_background_loop():
            thread.start()
            thread.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    async def aexecute(
        self, afunction: Callable[[Any], Awaitable[Any]], data: Sequence[Any], concurrency: int | None = None
    ) -> list[Any]:
        """Run `await afunction(item)` over `data` on the running loop with `concurrency` items in flight."""
        results = await self._aexecute_for_a_thread(afunction, data, concurrency)
        if self._fatal is not None:
            raise self._fatal  # in the awaiting code, as any exception of its own
        return results

    async def _aexecute_for_a_thread(
        self, afunction: Callable[[Any], Awaitable[Any]], data: Sequence[Any], concurrency: int | None
    ) -> list[Any]:
        """`aexecute` for `execute_async`, which raises a SystemExit-like `self._fatal` in its caller's thread:
        raised here, at the top of a task on the background loop, it would stop the loop for good."""
        with _objects_before_frozen():
            return await self._aexecute(afunction, data, concurrency)

    async def _aexecute(
        self, afunction: Callable[[Any], Awaitable[Any]], data: Sequence[Any], concurrency: int | None
    ) -> list[Any]:
        self._fatal = None
        concurrency = concurrency or default_async_concurrency()
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}.")
        data = list(data)
        results: list[Any] = [_UNSET] * len(data)
        progress = _Progress(len(data), self.disable_progress_bar, self.compare_results)
        next_index = iter(range(len(data)))
        cancelled = self.cancel_jobs.is_set
        rate_limiter = self.rate_limiter
        # A hidden bar has nothing to show: items then skip the progress bookkeeping.
        advance = None if self.disable_progress_bar else progress.advance
        pacer = LaunchPacer(concurrency)
        clock = time.perf_counter

        async def run_items() -> None:
            took = 0.0  # how long this worker's last item took
            for index in next_index:
                if cancelled():
                    return
                if rate_limiter is not None:
                    await rate_limiter.await_slot()
                    if cancelled():
                        return
                if pacer.gap:
                    delay = pacer.delay(took)
                    if delay > 0:
                        await asyncio.sleep(delay)
                        if cancelled():
                            return
                item = data[index]
                started = clock()
                try:
                    outcome = await afunction(item)
                except asyncio.CancelledError as e:
                    if cancelled():  # the batch is stopping: this worker was cancelled on purpose
                        raise
                    error: BaseException = e  # one the item raised itself: its failure
                except Exception as e:
                    error = e
                except BaseException as e:  # SystemExit and the like: the run stops and the caller raises it
                    fatal.append(e)
                    stop_the_others()
                    return
                else:
                    took = clock() - started
                    pacer.record(took)  # successes only: a quick failure says little of the rest
                    results[index] = outcome
                    if advance is not None:
                        advance(outcome)
                    continue
                took = clock() - started
                self._record(results, index, item, None, error)
                if advance is not None:
                    advance(error)
                if cancelled():  # `max_errors` reached: the items still in flight are abandoned
                    stop_the_others()

        def stop_the_others() -> None:
            self.cancel_jobs.set()
            for worker in workers:
                if worker is not asyncio.current_task():
                    worker.cancel()

        fatal: list[BaseException] = []
        # Each worker is a task, so it runs in its own copy of the caller's context.
        workers = [asyncio.ensure_future(run_items()) for _ in range(min(concurrency, len(data)))]
        try:
            if workers:
                await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
                if any(not w.done() for w in workers):  # one failed outside an item: stop the rest
                    stop_the_others()
                    await asyncio.wait(workers)
        except BaseException:
            self.cancel_jobs.set()
            for w in workers:
                w.cancel()
            raise
        finally:
            progress.close()
        if fatal:
            self._fatal = fatal[0]
            return []
        for w in workers:  # a worker that failed outside an item (not one stopped above)
            if not w.cancelled() and w.exception() is not None:
                raise w.exception()
        return self._finish(results)
