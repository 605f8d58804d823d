"""`Parallel`: run many (module, example) pairs at once, as DSPy's, with an async path for modules that have one.

By default, pairs whose modules are all turbodspy's own async-capable modules (`Predict`, `ChainOfThought`, with
no callbacks set) run on one event loop with many examples in flight (`concurrency`, default 32); every other
program runs on threads (`num_threads`, default `settings.num_threads`), as in DSPy, since its code might block a
loop. `concurrency=` selects the async path for any program.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from turbodspy.primitives.example import Example
from turbodspy.primitives.parallel import (
    ParallelExecutor,
    _objects_before_frozen,
    async_by_default,
    has_async_path,
    run_on_worker_thread,
)
from turbodspy.settings import settings


class Parallel:
    """Run `(module, example)` pairs in parallel: `Parallel(num_threads=8)(pairs)` -> results in order."""

    def __init__(
        self,
        num_threads: int | None = None,
        max_errors: int | None = None,
        access_examples: bool = True,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        timeout: float | None = None,
        straggler_limit: int = 3,
        *,
        concurrency: int | None = None,
        requests_per_minute: float | None = None,
    ) -> None:
        self._threads_requested = num_threads is not None
        self.num_threads = num_threads or settings.num_threads
        self.max_errors = settings.max_errors if max_errors is None else max_errors
        self.access_examples = access_examples
        self.return_failed_examples = return_failed_examples
        self.provide_traceback = provide_traceback
        self.disable_progress_bar = disable_progress_bar
        self.timeout = timeout
        self.straggler_limit = straggler_limit
        self.concurrency = concurrency
        self.requests_per_minute = requests_per_minute
        self.failed_examples: list[Any] = []
        self.exceptions: list[BaseException] = []
        self._failed_as_inputs = False  # set by `Module.batch`, which hands over whole examples
        self._sync_modules: set[int] = set()  # ids of the modules of an async run that have no async path

    def forward(self, exec_pairs: list[tuple[Any, Any]], num_threads: int | None = None) -> Any:
        with _objects_before_frozen():  # first thing: see `_objects_before_frozen`
            return self._forward(exec_pairs, num_threads)

    def _forward(self, exec_pairs: list[tuple[Any, Any]], num_threads: int | None) -> Any:
        threads_requested = self._threads_requested or num_threads is not None
        num_threads = num_threads if num_threads is not None else self.num_threads
        executor = ParallelExecutor(
            num_threads=num_threads,
            max_errors=self.max_errors,
            provide_traceback=self.provide_traceback,
            disable_progress_bar=self.disable_progress_bar,
            timeout=self.timeout,
            straggler_limit=self.straggler_limit,
            requests_per_minute=self.requests_per_minute,
        )
        modules = {id(module): module for module, _ in exec_pairs}  # each distinct module is checked once
        use_async = self.concurrency is not None or (
            not threads_requested and bool(exec_pairs) and _all_async_by_default(modules.values(), exec_pairs)
        )
        if use_async:
            # Decided once per module, not per item: which have no async path (`concurrency=` given for them).
            self._sync_modules = {key for key, module in modules.items() if not has_async_path(module)}
            results = executor.execute_async(self._aprocess_pair, exec_pairs, self.concurrency)
        else:
            results = executor.execute(self._process_pair, exec_pairs)

        if not self.return_failed_examples:
            return results
        for index in executor.failed_indices:
            _, example = exec_pairs[index]
            # As DSPy: `Parallel` reports the examples it was given; `Module.batch` their inputs.
            if self._failed_as_inputs and isinstance(example, Example):
                example = example.inputs()
            self.failed_examples.append(example)
            self.exceptions.append(executor.exceptions_map[index])
        return results, self.failed_examples, self.exceptions

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def _process_pair(self, pair: tuple[Any, Any]) -> Any:
        module, example = pair
        if isinstance(example, Example):
            return module(**_input_kwargs(example)) if self.access_examples else module(example)
        if isinstance(example, dict):
            return module(**example)
        if isinstance(example, list) and isinstance(module, Parallel):
            return module(example)
        if isinstance(example, tuple):
            return module(*example)
        raise ValueError(
            f"Invalid example type: {type(example)}, only supported types are Example, dict, list and tuple"
        )

    async def _aprocess_pair(self, pair: tuple[Any, Any]) -> Any:
        module, example = pair
        if id(module) in self._sync_modules:  # no async path of its own: a worker thread
            return await run_on_worker_thread(self._process_pair, pair)
        acall = module.acall
        if isinstance(example, Example):
            return await (acall(**_input_kwargs(example)) if self.access_examples else acall(example))
        if isinstance(example, dict):
            return await acall(**example)
        if isinstance(example, tuple):
            return await acall(*example)
        raise ValueError(f"Invalid example type: {type(example)}, only supported types are Example, dict and tuple")


def _input_kwargs(example: Example) -> dict[str, Any]:
    """`dict(**example.inputs())` without building the intermediate Example (internal `dspy_*` fields left out)."""
    keys = example._input_keys
    if keys is None:
        example.inputs()  # raises the ValueError that says to call `with_inputs`
    store = example._store
    if len(keys) == 1:  # the common case: no filtering pass over the whole record
        for key in keys:
            if key in store and not key.startswith("dspy_"):
                return {key: store[key]}
            return {}
    return {k: v for k, v in store.items() if k in keys and not k.startswith("dspy_")}


def _all_async_by_default(modules: Iterable[Any], pairs: list[tuple[Any, Any]]) -> bool:
    """Whether every one of the pairs' (distinct) `modules` runs on the event loop by default (see
    `async_by_default`), and every example is a kind `acall` takes."""
    return all(async_by_default(m) for m in modules) and all(
        isinstance(example, (Example, dict, tuple)) for _, example in pairs
    )
