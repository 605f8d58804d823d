"""Evaluate: scores, per-example results, failures, tables and files, and agreement with DSPy's Evaluate."""

from __future__ import annotations

import csv
import json
import threading

import dspy as real_dspy
import pytest
from test_batch import AsyncSquare, Square, examples

import turbodspy as dspy
from turbodspy.primitives.parallel import BatchCancelledError


def test_evaluate_scores_and_reports_per_example_results(tmp_path, capsys):
    def metric(example, pred, trace=None):
        return float(example.label == pred.y)

    program = Square()
    devset = examples([1, 2, 3, -4])
    devset[1] = devset[1].copy(label=0)
    out_json = tmp_path / "results.json"
    result = dspy.Evaluate(devset=devset, metric=metric, num_threads=2, display_table=True, save_as_json=str(out_json))(
        program
    )
    assert result.score == 50.0
    assert [score for *_, score in result.results] == [1.0, 0.0, 1.0, 0.0]
    assert result.results[3][1] == dspy.Prediction()
    assert result.results[0][0] is devset[0] and result.results[0][1].y == 1
    rows = json.loads(out_json.read_text())
    assert rows[0]["metric"] == 1.0 and rows[0]["x"] == 1 and rows[0]["y"] == 1
    table = capsys.readouterr().out
    assert "✔️ [1.000]" in table and "metric" in table
    assert repr(result) == "EvaluationResult(score=50.0, results=<list of 4 results>)"


def test_evaluate_async_program_and_progress(capsys):
    result = dspy.Evaluate(devset=examples(range(10)), metric=lambda ex, p: ex.label == p.y, display_progress=True)(
        AsyncSquare()
    )
    assert result.score == 100.0
    assert "Average Metric: 10.00 / 10 (100.0%)" in capsys.readouterr().out


def test_evaluate_rejects_empty_devset_and_missing_metric():
    with pytest.raises(ValueError, match="devset"):
        dspy.Evaluate(devset=[], metric=lambda e, p: 1)(Square())
    with pytest.raises(ValueError, match="metric"):
        dspy.Evaluate(devset=examples([1]))(Square())


def test_evaluate_agrees_with_dspy_on_a_real_program(llm_server):
    def metric(example, pred, trace=None):
        return float(len(pred.answer) % 2 == len(example.question) % 2)

    scores = []
    for lib in (dspy, real_dspy):
        lm = lib.LM("openai/test-model", api_base=llm_server.openai_base, api_key="local", cache=False)
        devset = [lib.Example(question=f"Question {i}?" + "!" * i).with_inputs("question") for i in range(12)]
        with lib.context(lm=lm):
            result = lib.Evaluate(devset=devset, metric=metric, num_threads=4)(lib.Predict("question -> answer"))
        scores.append((result.score, [s for *_, s in result.results], [p.answer for _, p, _ in result.results]))
    assert scores[0] == scores[1]


def test_evaluate_stops_after_max_errors():
    with pytest.raises(BatchCancelledError):
        dspy.Evaluate(devset=examples([-1, -2, -3, 4]), metric=lambda e, p: 1.0, num_threads=1, max_errors=2)(Square())


def test_evaluate_callbacks_see_start_and_end():
    events = []

    class Rec(dspy.BaseCallback):
        def on_evaluate_start(self, call_id, instance, inputs):
            events.append(("start", instance, inputs["program"]))

        def on_evaluate_end(self, call_id, outputs, exception=None):
            events.append(("end", outputs.score))

    program = Square()
    evaluate = dspy.Evaluate(devset=examples([1, 2]), metric=lambda e, p: e.label == p.y, num_threads=1)
    with dspy.context(callbacks=[Rec()]):
        evaluate(program)
    assert events[0] == ("start", evaluate, program) and events[-1] == ("end", 100.0)


def test_async_evaluate_runs_metrics_off_the_event_loop():
    threads = set()

    def judge(example, pred, trace=None):
        threads.add(threading.current_thread().name)
        # A metric that runs a program itself (an LM judge would): it must not block or deadlock the loop.
        return float(Square()(x=2).y == 4 and example.label == pred.y)

    result = dspy.Evaluate(devset=examples(range(8)), metric=judge)(AsyncSquare())
    assert result.score == 100.0
    assert threads and not any(name == "turbodspy-event-loop" for name in threads)


def test_keyword_arguments_of_older_dspy_are_accepted_and_ignored(caplog):
    evaluate = dspy.Evaluate(devset=[dspy.Example(x=1).with_inputs("x")], metric=lambda e, p: 1, return_all_scores=True)
    assert "return_all_scores" in caplog.text
    assert evaluate.devset


def test_csv_export_holds_failed_examples_too(tmp_path):
    class Half(dspy.Module):
        def forward(self, x):
            if x % 2:
                raise ValueError("odd")
            return dspy.Prediction(y=x * x)

    path = tmp_path / "results.csv"
    devset = examples([1, 0, 3, 2])  # the first row is a failure's, without the prediction's columns
    result = dspy.Evaluate(devset=devset, metric=lambda e, p: p.y == e.label, num_threads=2, save_as_csv=str(path))(
        Half()
    )
    assert result.score == 50.0
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 4 and [row["y"] for row in rows] == ["", "0", "", "4"]
