"""Example, Prediction and Completions behave as DSPy's (compared against the installed dspy where it helps)."""

from __future__ import annotations

import copy

import dspy as real_dspy
import pydantic
import pytest

import turbodspy as dspy


def test_example_fields_inputs_labels_match_dspy():
    for lib in (dspy, real_dspy):
        ex = lib.Example(question="2+2?", answer="4", dspy_uuid="x").with_inputs("question")
        assert ex.question == "2+2?" and ex["answer"] == "4"
        assert ex.inputs().toDict() == {"question": "2+2?"}
        assert ex.labels().toDict() == {"answer": "4", "dspy_uuid": "x"}
        assert ex.keys() == ["question", "answer"] and len(ex) == 2
        assert ex.keys(include_dspy=True) == ["question", "answer", "dspy_uuid"]
    ours = dspy.Example(question="q", answer="a").with_inputs("question")
    theirs = real_dspy.Example(question="q", answer="a").with_inputs("question")
    assert repr(ours) == repr(theirs)
    assert repr(ours.labels()) == repr(theirs.labels())


def test_example_without_with_inputs_refuses_inputs():
    with pytest.raises(ValueError, match="with_inputs"):
        dspy.Example(a=1).inputs()


def test_example_copy_keeps_input_split_and_is_independent():
    ex = dspy.Example(q="1", a="2").with_inputs("q")
    c = ex.copy(a="3")
    c.extra = "new field"
    assert c.inputs().toDict() == {"q": "1"}
    assert ex.a == "2" and "extra" not in ex and c.extra == "new field"
    assert ex.without("a").toDict() == {"q": "1"}
    assert dspy.Example(ex).inputs().keys() == ["q"]


def test_example_equality_hash_and_dict_like():
    a, b = dspy.Example(x=1, y=2), dspy.Example(x=1, y=2)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert "x" in a and a.get("z", "default") == "default"
    assert list(a) == ["x", "y"] and a.items() == [("x", 1), ("y", 2)] and a.values() == [1, 2]
    del a["x"]
    assert a.toDict() == {"y": 2}
    with pytest.raises(AttributeError):
        _ = a.missing


def test_to_dict_converts_nested_examples_and_pydantic():
    class Point(pydantic.BaseModel):
        x: int

    ex = dspy.Example(p=Point(x=1), inner=dspy.Example(a=1), items=[dspy.Example(b=2)], d={"k": Point(x=3)})
    assert ex.toDict() == {"p": {"x": 1}, "inner": {"a": 1}, "items": [{"b": 2}], "d": {"k": {"x": 3}}}


def test_example_deepcopies():
    ex = dspy.Example(a=[1]).with_inputs("a")
    c = copy.deepcopy(ex)
    c.a.append(2)
    assert ex.a == [1] and c.inputs().keys() == ["a"]


def test_prediction_from_completions_first_choice_and_all_choices():
    pred = dspy.Prediction.from_completions([{"answer": "a1", "r": "x"}, {"answer": "a2", "r": "y"}])
    assert pred.answer == "a1" and pred["r"] == "x"
    assert len(pred.completions) == 2
    assert pred.completions.answer == ["a1", "a2"]
    assert pred.completions[1].answer == "a2" and isinstance(pred.completions[1], dspy.Prediction)
    with pytest.raises(IndexError):
        pred.completions[2]
    theirs = real_dspy.Prediction.from_completions([{"answer": "a1", "r": "x"}, {"answer": "a2", "r": "y"}])
    assert repr(pred) == repr(theirs)
    assert repr(pred.completions) == repr(theirs.completions)


def test_completions_reject_ragged_fields():
    with pytest.raises(ValueError, match="same number"):
        dspy.Completions({"a": [1, 2], "b": [1]})


def test_prediction_score_arithmetic_and_usage():
    p, q = dspy.Prediction(score=0.5), dspy.Prediction(score=1.5)
    assert p + q == 2.0 and p + 1 == 1.5 and 1 + p == 1.5 and q / p == 3.0 and 3 / q == 2.0
    assert p < q and q >= p and p <= 0.5 and not p > 1
    assert sum([p, q]) == 2.0
    with pytest.raises(ValueError, match="score"):
        float(dspy.Prediction(answer="x"))
    assert p.get_lm_usage() is None
    p.set_lm_usage({"m": {"total_tokens": 3}})
    assert p.get_lm_usage() == {"m": {"total_tokens": 3}}
    assert repr(dspy.Prediction(answer="x")) == repr(real_dspy.Prediction(answer="x"))


def test_completions_show_what_the_lm_answered_even_after_fields_change():
    for lib in (dspy, real_dspy):
        pred = lib.Prediction.from_completions([{"answer": "a", "note": "n"}])
        pred.answer = "changed"
        pred["note"] = "changed too"
        assert pred.completions.answer == ["a"] and pred.completions.note == ["n"]
        assert pred.answer == "changed" and len(pred.completions) == 1
        other = lib.Prediction.from_completions([{"answer": "a"}])
        del other["answer"]
        assert other.completions.answer == ["a"] and "answer" not in other


def test_predictions_copy_and_keep_no_input_split():
    pred = dspy.Prediction.from_completions([{"answer": "a"}], signature=None)
    twin = copy.deepcopy(pred)
    assert twin == pred and twin.completions.answer == ["a"] and twin is not pred
    with pytest.raises(AttributeError):
        _ = pred._input_keys
    assert dspy.Example(pred).toDict() == {"answer": "a"}
    assert copy.copy(dspy.Example(a=1).with_inputs("a")).inputs().keys() == ["a"]
