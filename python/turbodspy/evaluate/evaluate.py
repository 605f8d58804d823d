"""`Evaluate`: run a program over a dev set, score each prediction with a metric, report the average, as DSPy's.

Runs on the same batch machinery as `Module.batch` (threads, or one event loop for async-capable programs).
A failed example scores `failure_score`; the run stops after `max_errors` failures.
"""

from __future__ import annotations

import csv
import json
import logging
import types
from collections.abc import Callable
from typing import Any

from turbodspy.primitives.example import Example
from turbodspy.primitives.parallel import (
    ParallelExecutor,
    async_by_default,
    has_async_path,
    run_on_worker_thread,
)
from turbodspy.primitives.prediction import Prediction
from turbodspy.settings import settings
from turbodspy.utils.callback import with_callbacks

logger = logging.getLogger(__name__)


class EvaluationResult(Prediction):
    """`score`: the average metric in percent (e.g. 67.3); `results`: `(example, prediction, score)` per example."""

    def __init__(self, score: float, results: list[tuple[Example, Any, Any]]) -> None:
        super().__init__(score=score, results=results)

    def __repr__(self) -> str:
        return f"EvaluationResult(score={self.score}, results=<list of {len(self.results)} results>)"

    __str__ = __repr__


class Evaluate:
    """`Evaluate(devset=..., metric=..., num_threads=...)(program)` -> `EvaluationResult`."""

    def __init__(
        self,
        *,
        devset: list[Example],
        metric: Callable[..., Any] | None = None,
        num_threads: int | None = None,
        display_progress: bool = False,
        display_table: bool | int = False,
        max_errors: int | None = None,
        provide_traceback: bool | None = None,
        failure_score: float = 0.0,
        save_as_csv: str | None = None,
        save_as_json: str | None = None,
        concurrency: int | None = None,
        requests_per_minute: float | None = None,
        **kwargs: Any,
    ) -> None:
        if "return_outputs" in kwargs:
            raise ValueError(
                "`return_outputs` is no longer supported. Results are always returned inside the `results` field "
                "of the `EvaluationResult` object."
            )
        if kwargs:  # DSPy 3.4.1 accepts and ignores them (older code passes `return_all_scores`)
            logger.warning(f"Evaluate ignores the keyword arguments {sorted(kwargs)}.")
        self.devset = devset
        self.metric = metric
        self.num_threads = num_threads
        self.display_progress = display_progress
        self.display_table = display_table
        self.max_errors = max_errors
        self.provide_traceback = provide_traceback
        self.failure_score = failure_score
        self.save_as_csv = save_as_csv
        self.save_as_json = save_as_json
        self.concurrency = concurrency
        self.requests_per_minute = requests_per_minute

    @with_callbacks
    def __call__(
        self,
        program: Any,
        metric: Callable[..., Any] | None = None,
        devset: list[Example] | None = None,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int | None = None,
        callback_metadata: dict[str, Any] | None = None,
        save_as_csv: str | None = None,
        save_as_json: str | None = None,
    ) -> EvaluationResult:
        """Evaluate `program`; arguments given here override the ones given to `Evaluate(...)`."""
        metric = metric if metric is not None else self.metric
        devset = devset if devset is not None else self.devset
        num_threads = num_threads if num_threads is not None else self.num_threads
        display_progress = display_progress if display_progress is not None else self.display_progress
        display_table = display_table if display_table is not None else self.display_table
        save_as_csv = save_as_csv if save_as_csv is not None else self.save_as_csv
        save_as_json = save_as_json if save_as_json is not None else self.save_as_json

        if metric is None:
            raise ValueError("Evaluate needs a metric: pass `metric=fn(example, prediction)` here or to Evaluate().")
        if not devset:
            raise ValueError("devset must contain at least one example, got an empty devset.")
        if callback_metadata:
            logger.debug(f"Evaluate is called with callback metadata: {callback_metadata}")

        executor = ParallelExecutor(
            num_threads=num_threads,
            disable_progress_bar=not display_progress,
            max_errors=self.max_errors if self.max_errors is not None else settings.max_errors,
            provide_traceback=self.provide_traceback,
            compare_results=True,
            requests_per_minute=self.requests_per_minute,
        )

        def process_item(example: Example) -> tuple[Any, Any]:
            prediction = program(**example.inputs())
            return prediction, metric(example, prediction)

        program_supports_async = has_async_path(program)

        async def aprocess_item(example: Example) -> tuple[Any, Any]:
            if not program_supports_async:  # `concurrency=` given for a sync program or a function
                return await run_on_worker_thread(process_item, example)
            prediction = await program.acall(**example.inputs())
            # The metric may be slow (an LM judge): it runs on a worker thread, never blocking the event loop.
            return prediction, await run_on_worker_thread(metric, example, prediction)

        use_async = self.concurrency is not None or (num_threads is None and async_by_default(program))
        if use_async:
            outcomes = executor.execute_async(aprocess_item, devset, self.concurrency)
        else:
            outcomes = executor.execute(process_item, devset)

        results = [
            (example, *((Prediction(), self.failure_score) if outcome is None else outcome))
            for example, outcome in zip(devset, outcomes, strict=True)
        ]
        ncorrect, ntotal = sum(score for *_, score in results), len(devset)
        logger.info(f"Average Metric: {ncorrect} / {ntotal} ({round(100 * ncorrect / ntotal, 1)}%)")

        if display_table or save_as_csv or save_as_json:
            metric_name = metric.__name__ if isinstance(metric, types.FunctionType) else metric.__class__.__name__
            rows = _result_rows(results, metric_name)
            if display_table:
                _print_table(rows, metric_name, None if display_table is True else int(display_table))
            if save_as_csv:
                with open(save_as_csv, "w", newline="", encoding="utf-8") as f:
                    # Every row's columns: a failed example's row lacks the prediction's (DSPy's csv export fails).
                    writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
                    writer.writeheader()
                    writer.writerows(rows)
            if save_as_json:
                with open(save_as_json, "w", encoding="utf-8") as f:
                    json.dump(rows, f, default=str)

        return EvaluationResult(score=round(100 * ncorrect / ntotal, 2), results=results)


def _result_rows(results: list[tuple[Example, Any, Any]], metric_name: str) -> list[dict[str, Any]]:
    rows = []
    for example, prediction, score in results:
        if hasattr(prediction, "items") and callable(prediction.items):
            row = _merge(example, prediction)
        else:
            row = {**example.toDict(), "prediction": prediction}
        row[metric_name] = score
        rows.append(row)
    return rows


def _merge(example: Any, prediction: Any) -> dict[str, Any]:
    """Example and prediction fields side by side; a name both have becomes `example_<name>` / `pred_<name>`."""
    d1 = example.toDict() if hasattr(example, "toDict") else dict(example)
    d2 = prediction.toDict() if hasattr(prediction, "toDict") else dict(prediction.items())
    merged = {(f"example_{k}" if k in d2 else k): v for k, v in d1.items()}
    merged.update({(f"pred_{k}" if k in d1 else k): v for k, v in d2.items()})
    return merged


def _truncate(value: Any, words: int = 25) -> str:
    parts = str(value).split()
    return " ".join(parts[:words]) + "..." if len(parts) > words else " ".join(parts)


def _print_table(rows: list[dict[str, Any]], metric_name: str, limit: int | None) -> None:
    """A plain-text table of the results (first `limit` rows), with the metric column marked as DSPy does."""
    shown = rows if limit is None else rows[:limit]
    columns = list(dict.fromkeys(k for row in shown for k in row))

    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if column == metric_name:
            if isinstance(value, float):
                return f"✔️ [{value:.3f}]"
            return f"✔️ [{value}]" if value is not None else ""
        return _truncate(value, 25)

    table = [[str(i)] + [cell(row, c) for c in columns] for i, row in enumerate(shown)]
    header = ["", *columns]
    widths = [min(60, max(len(r[i]) for r in [header, *table])) for i in range(len(header))]
    line = lambda r: "  ".join(v[:w].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    print("\n".join([line(header), *(line(r) for r in table)]))
    if limit is not None and len(rows) > limit:
        print(f"... {len(rows) - limit} more rows not displayed ...")
