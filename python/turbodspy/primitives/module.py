"""`Module`: the base class of every program. `__call__` runs `forward`, `acall` runs `aforward`.

A call records the module on `settings.caller_modules`, reports to callbacks, and (with
`configure(track_usage=True)`) attaches the LM token usage of the whole call to the returned prediction.
"""

from __future__ import annotations

import logging
from typing import Any, TextIO

from turbodspy.clients.history import CallHistory, pretty_print_history
from turbodspy.primitives.base_module import BaseModule
from turbodspy.primitives.example import Example
from turbodspy.primitives.prediction import Prediction
from turbodspy.settings import _overrides, current, current_overrides, global_config
from turbodspy.utils.callback import with_callbacks
from turbodspy.utils.usage_tracker import track_usage

logger = logging.getLogger(__name__)


class ProgramMeta(type):
    """Gives every module its base attributes even when a subclass's `__init__` forgets `super().__init__()`."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = cls.__new__(cls, *args, **kwargs)
        if isinstance(obj, cls):
            Module._base_init(obj)
            cls.__init__(obj, *args, **kwargs)
            if not hasattr(obj, "callbacks"):
                obj.callbacks = []
            if not hasattr(obj, "history"):
                obj.history = CallHistory()
        return obj


class Module(BaseModule, metaclass=ProgramMeta):
    """Subclass, create sub-modules in `__init__`, and write `forward` (and optionally `aforward`)."""

    def _base_init(self) -> None:
        self._compiled = False
        self.callbacks = []
        self.history = CallHistory()

    def __init__(self, callbacks: list | None = None) -> None:
        self.callbacks = callbacks or []
        self._compiled = False
        # The LM calls made under this module (bounded by `settings.max_history_size`).
        self.history = CallHistory()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("history", None)
        state.pop("callbacks", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("history", CallHistory())
        self.__dict__.setdefault("callbacks", [])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        config = current_overrides() or global_config
        if config["callbacks"] or self.callbacks:
            return self._call_observed(*args, **kwargs)
        return self._run(config, args, kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        config = current_overrides() or global_config
        if config["callbacks"] or self.callbacks:
            return await self._acall_observed(*args, **kwargs)
        return await self._arun(config, args, kwargs)

    # Callbacks see these (on_module_start/end); calls without callbacks skip the wrapper entirely.
    @with_callbacks
    def _call_observed(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(current(), args, kwargs)

    @with_callbacks
    async def _acall_observed(self, *args: Any, **kwargs: Any) -> Any:
        return await self._arun(current(), args, kwargs)

    def _run(self, config: dict[str, Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        # What `settings.context(caller_modules=[..., self])` does, without a generator per call.
        inner = config.copy()
        inner["caller_modules"] = [*(config["caller_modules"] or ()), self]
        token = _overrides.set(inner)
        try:
            if config["track_usage"] and config["usage_tracker"] is None:
                with track_usage() as tracker:
                    output = self.forward(*args, **kwargs)
                self._set_lm_usage(tracker.get_total_tokens(), output)
                return output
            return self.forward(*args, **kwargs)
        finally:
            _overrides.reset(token)

    async def _arun(self, config: dict[str, Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        inner = config.copy()
        inner["caller_modules"] = [*(config["caller_modules"] or ()), self]
        token = _overrides.set(inner)
        try:
            if config["track_usage"] and config["usage_tracker"] is None:
                with track_usage() as tracker:
                    output = await self.aforward(*args, **kwargs)
                self._set_lm_usage(tracker.get_total_tokens(), output)
                return output
            return await self.aforward(*args, **kwargs)
        finally:
            _overrides.reset(token)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define `forward(...)` to be called.")

    async def aforward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} does not define `aforward(...)`, so it cannot be awaited with `acall`. "
            "Define `async def aforward(self, ...)`, or wrap the module with `turbodspy.asyncify(module)`."
        )

    def supports_async(self) -> bool:
        """Whether `acall` runs the same program as `__call__`, asynchronously: some class below Module defines
        `aforward`, and no `forward` defined after it (a subclass's own, or one set on the instance) would be
        skipped by it."""
        if "forward" in self.__dict__:
            return False
        mro = type(self).__mro__
        defines_forward = next(c for c in mro if "forward" in c.__dict__)
        defines_aforward = next(c for c in mro if "aforward" in c.__dict__)
        return defines_aforward is not Module and issubclass(defines_aforward, defines_forward)

    def named_predictors(self) -> list[tuple[str, Any]]:
        """(name, predictor) for every `Predict` in this program, e.g. `[("qa.predict", Predict(...))]`."""
        from turbodspy.predict.predict import Predict

        return [(name, param) for name, param in self.named_parameters() if isinstance(param, Predict)]

    def predictors(self) -> list[Any]:
        return [param for _, param in self.named_predictors()]

    def set_lm(self, lm: Any) -> None:
        """Use `lm` for every predictor in this program (overrides the configured LM for them)."""
        for _, param in self.named_parameters():
            if isinstance(param, Module):
                param.lm = lm

    def get_lm(self) -> Any:
        """The one LM all predictors use; ValueError if they use different LMs."""
        used = [param.lm for _, param in self.named_parameters() if isinstance(param, Module)]
        if len({id(lm) for lm in used}) == 1:
            return used[0]
        raise ValueError("Multiple LMs are being used in the module. There's no unique LM to return.")

    def map_named_predictors(self, func: Any) -> Module:
        """Replace each predictor by `func(predictor)`; returns self."""
        for name, predictor in self.named_predictors():
            _set_by_path(self, name, func(predictor))
        return self

    def inspect_history(self, n: int = 1, file: TextIO | None = None) -> None:
        """Print the last `n` LM calls this module made (as `turbodspy.inspect_history` does)."""
        pretty_print_history(self.history, n, file=file)

    def __repr__(self) -> str:
        return "\n".join(f"{name} = {param}" for name, param in self.named_predictors())

    def batch(
        self,
        examples: list[Example],
        num_threads: int | None = None,
        max_errors: int | None = None,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        timeout: float | None = None,
        straggler_limit: int = 3,
        *,
        concurrency: int | None = None,
        requests_per_minute: float | None = None,
    ) -> list[Any] | tuple[list[Any], list[Example], list[Exception]]:
        """Run the program on every example's inputs, in parallel; results come back in the examples' order.

        Args:
            examples: `Example`s with inputs marked (`with_inputs`), or plain dicts of inputs.
            num_threads: Run on this many threads. By default turbodspy's own `Predict` and `ChainOfThought`
                (with no callbacks set) run on one event loop with `concurrency` examples in flight; other
                programs run on `settings.num_threads` threads, as in DSPy (their code might block a loop).
            max_errors: Stop (raising `BatchCancelledError`) once this many examples failed; default
                `settings.max_errors`. Failed examples give `None` in the results.
            return_failed_examples: Also return the failed examples and their exceptions.
            provide_traceback: Log the traceback of each failure.
            disable_progress_bar: Hide the tqdm progress bar.
            timeout, straggler_limit: Accepted for DSPy compatibility; turbodspy never re-submits or abandons a
                slow example.
            concurrency: Examples in flight at once on the async path; setting it selects that path (a program
                without `aforward` then runs on worker threads). Default 32, or `settings.num_threads` when that
                is configured to something other than its default of 8.
            requests_per_minute: Start at most this many examples per minute.
        """
        from turbodspy.predict.parallel import Parallel
        from turbodspy.primitives.parallel import _objects_before_frozen

        with _objects_before_frozen():  # first thing: see `_objects_before_frozen`
            for ex in examples:
                if isinstance(ex, Example) and ex._input_keys is None:
                    ex.inputs()  # raises the ValueError that says to call `with_inputs`
            # Examples go in whole: Parallel passes only their inputs to the program.
            pairs = [(self, ex) for ex in examples]
            parallel = Parallel(
                num_threads=num_threads,
                max_errors=max_errors,
                return_failed_examples=return_failed_examples,
                provide_traceback=provide_traceback,
                disable_progress_bar=disable_progress_bar,
                timeout=timeout,
                straggler_limit=straggler_limit,
                concurrency=concurrency,
                requests_per_minute=requests_per_minute,
            )
            parallel._failed_as_inputs = True  # as DSPy's batch reports them
            return parallel.forward(pairs)

    def _set_lm_usage(self, tokens: dict[str, Any], output: Any) -> None:
        prediction = output
        if isinstance(output, tuple) and output and isinstance(output[0], Prediction):
            prediction = output[0]
        if isinstance(prediction, Prediction):
            prediction.set_lm_usage(tokens)
        else:
            logger.warning(
                "Failed to set LM usage. Please return `dspy.Prediction` object from dspy.Module to enable usage "
                "tracking."
            )


def _set_by_path(obj: Any, path: str, value: Any) -> None:
    """Set `obj.<path>` where path is a `named_parameters` name such as `a.b[0]['k'].c`."""
    import re

    tokens = re.findall(r"\.?([A-Za-z_]\w*)|\[(\d+)\]|\['([^']*)'\]", path)
    target = obj
    for i, (attr, index, key) in enumerate(tokens):
        last = i == len(tokens) - 1
        if attr:
            if last:
                setattr(target, attr, value)
            else:
                target = getattr(target, attr)
        elif index:
            if last:
                target[int(index)] = value
            else:
                target = target[int(index)]
        else:
            if last:
                target[key] = value
            else:
                target = target[key]
