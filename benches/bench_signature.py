"""Building signatures from strings: turbodspy vs DSPy 3.4.1, side by side on the same strings.

Run with `make bench`. Each pair checks that both libraries build the same fields before timing.
"""

from __future__ import annotations

import itertools
from typing import Any

import dspy
import pytest

import turbodspy

SIGNATURE = "question, context: list[str] -> answer: int, confidence: float"


def _fresh(prefix: str) -> Any:
    """A new signature string on every call (a distinct first field name), so no cache can answer it."""
    counter = itertools.count()
    return lambda: SIGNATURE.replace("question", f"question_{prefix}{next(counter)}", 1)


def _shape(sig: Any) -> list[tuple[str, Any, dict]]:
    return [(name, f.annotation, dict(f.json_schema_extra)) for name, f in sig.fields.items()] + [sig.instructions]


def _check_agree() -> None:
    ours, theirs = turbodspy.Signature(SIGNATURE), dspy.Signature(SIGNATURE)
    assert _shape(ours) == _shape(theirs)
    fresh = "question_check, context: list[str] -> answer: int, confidence: float"
    assert _shape(turbodspy.Signature(fresh)) == _shape(dspy.Signature(fresh))


LIBRARIES = {"turbodspy": turbodspy, "dspy": dspy}


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
def test_signature_from_new_string(benchmark: Any, library: str) -> None:
    _check_agree()
    benchmark.group = "signature from a new string"
    make = _fresh(library)
    Signature = LIBRARIES[library].Signature
    benchmark(lambda: Signature(make()))


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
def test_signature_repeated_string(benchmark: Any, library: str) -> None:
    _check_agree()
    benchmark.group = "signature from a repeated string"
    Signature = LIBRARIES[library].Signature
    benchmark(lambda: Signature(SIGNATURE))


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
def test_signature_with_instructions(benchmark: Any, library: str) -> None:
    _check_agree()
    benchmark.group = "with_instructions on a string signature"
    sig = LIBRARIES[library].Signature(SIGNATURE)
    assert sig.with_instructions("Answer briefly.").instructions == "Answer briefly."
    benchmark(lambda: sig.with_instructions("Answer briefly."))


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
def test_signature_prepend_reasoning(benchmark: Any, library: str) -> None:
    # ChainOfThought's edit: a reasoning output in front of the others.
    _check_agree()
    benchmark.group = "prepend a reasoning field"
    lib = LIBRARIES[library]
    sig = lib.Signature(SIGNATURE)
    ours = turbodspy.Signature(SIGNATURE).prepend("reasoning", turbodspy.OutputField(desc="steps"), type_=str)
    theirs = dspy.Signature(SIGNATURE).prepend("reasoning", dspy.OutputField(desc="steps"), type_=str)
    assert _shape(ours) == _shape(theirs)
    benchmark(lambda: sig.prepend("reasoning", lib.OutputField(desc="steps"), type_=str))
