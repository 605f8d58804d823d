"""ChatAdapter/JSONAdapter format and parse, turbodspy vs DSPy 3.4.1 side by side on the same inputs.

Each pair first checks both libraries give the same answer, then times them. Run with `make bench`.
Targets: ChatAdapter.format (3 demos) >= 30x, ChatAdapter.parse >= 10x, JSONAdapter.format >= 30x,
JSONAdapter.parse >= 5x.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from adapter_cases import build_case, signature_lib

import turbodspy

dspy = pytest.importorskip("dspy")

DEMOS = [
    {
        "question": "What is the capital of France?",
        "count": 1,
        "ratio": 0.5,
        "flag": True,
        "tags": ["geography", "europe"],
        "meta": {"difficulty": 1},
        "answer": 1,
        "score": 0.9,
        "ok": True,
        "items": ["Paris"],
        "mapping": {"paris": 1},
        "maybe": "sure",
    },
    {
        "question": "How many legs does a spider have?",
        "count": 8,
        "ratio": 1.0,
        "flag": False,
        "tags": ["biology"],
        "meta": {"difficulty": 2},
        "answer": 8,
        "score": 0.99,
        "ok": True,
        "items": ["eight", "legs"],
        "mapping": {"legs": 8},
        "maybe": None,
    },
    {
        "question": "Name two primes.",
        "count": 2,
        "ratio": 0.25,
        "flag": True,
        "tags": ["math", "primes", "numbers"],
        "meta": {"difficulty": 3, "points": 5},
        "answer": 2,
        "score": 0.75,
        "ok": True,
        "items": ["2", "3"],
        "mapping": {"two": 2, "three": 3},
        "maybe": "primes",
    },
]
INPUTS = {
    "question": "What is the tallest mountain on Earth, and how tall is it?",
    "count": 3,
    "ratio": 0.1,
    "flag": True,
    "tags": ["geography", "mountains"],
    "meta": {"difficulty": 2},
}
CHAT_COMPLETION = (
    "[[ ## answer ## ]]\n8849\n\n[[ ## score ## ]]\n0.95\n\n[[ ## ok ## ]]\nTrue\n\n"
    '[[ ## items ## ]]\n["Mount Everest", "Himalayas"]\n\n[[ ## mapping ## ]]\n{"everest": 8849}\n\n'
    "[[ ## maybe ## ]]\nNepal and China\n\n[[ ## completed ## ]]"
)
JSON_COMPLETION = (
    '```json\n{\n  "answer": 8849,\n  "score": 0.95,\n  "ok": true,\n  "items": ["Mount Everest", "Himalayas"],\n'
    '  "mapping": {"everest": 8849},\n  "maybe": "Nepal and China"\n}\n```'
)


def signatures() -> tuple[type, type]:
    from turbodspy.adapters import History

    return build_case("typed-values", signature_lib(), History)[0], build_case("typed-values", dspy, dspy.History)[0]


OURS = {"chat": turbodspy.ChatAdapter(), "json": turbodspy.JSONAdapter()}
THEIRS = {"chat": dspy.ChatAdapter(), "json": dspy.JSONAdapter()}


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
@pytest.mark.parametrize("style", ["chat", "json"])
def test_format_3_demos(benchmark, style: str, library: str) -> None:
    ours_sig, dspy_sig = signatures()
    expected = THEIRS[style].format(dspy_sig, DEMOS, INPUTS)
    assert OURS[style].format(ours_sig, DEMOS, INPUTS) == expected
    adapter, sig = (OURS[style], ours_sig) if library == "turbodspy" else (THEIRS[style], dspy_sig)
    benchmark.group = f"{style}-format-3-demos"
    result = benchmark(adapter.format, sig, DEMOS, INPUTS)
    assert result == expected


@pytest.mark.parametrize("library", ["turbodspy", "dspy"])
@pytest.mark.parametrize("style", ["chat", "json"])
def test_parse(benchmark, style: str, library: str) -> None:
    ours_sig, dspy_sig = signatures()
    completion = CHAT_COMPLETION if style == "chat" else JSON_COMPLETION
    expected = THEIRS[style].parse(dspy_sig, completion)
    assert OURS[style].parse(ours_sig, completion) == expected
    adapter, sig = (OURS[style], ours_sig) if library == "turbodspy" else (THEIRS[style], dspy_sig)
    benchmark.group = f"{style}-parse"
    result = benchmark(adapter.parse, sig, completion)
    assert result == expected
