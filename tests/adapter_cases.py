"""Signatures, demos and inputs shared by the adapter tests and benches, built the same way in turbodspy and DSPy.

Each signature builder takes the library module (`turbodspy` or `dspy`) and a History class, so the same
definition yields a signature of each library.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any, Literal, Optional

import pydantic

import turbodspy


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(pydantic.BaseModel):
    street: str
    zip_code: int
    tags: list[str] = []


def signature_lib() -> Any:
    """The module whose `Signature` builds turbodspy's side: turbodspy once it has signatures, else DSPy's."""
    if hasattr(turbodspy, "Signature"):
        return turbodspy
    import dspy

    return dspy


def simple(lib: Any, history_cls: type) -> type:
    return lib.Signature("question -> answer")


def typed(lib: Any, history_cls: type) -> type:
    return lib.Signature(
        "question: str, count: int, ratio: float, flag: bool, tags: list[str], meta: dict[str, int] -> "
        "answer: int, score: float, ok: bool, items: list[str], mapping: dict[str, int], maybe: Optional[str]",
        "Compute the things.",
    )


def choices(lib: Any, history_cls: type) -> type:
    class Choose(lib.Signature):
        """Pick a color and a mood.

        Be   careful:
            indented lines stay indented.
        """

        text: str = lib.InputField(desc="the text to read")
        color: Color = lib.OutputField(desc="the color it mentions")
        mood: Literal["happy", "sad", "it's fine"] = lib.OutputField()
        level: Literal[1, 2, 3] = lib.OutputField(desc="how strong")

    return Choose


def models(lib: Any, history_cls: type) -> type:
    class Extract(lib.Signature):
        """Extract the address."""

        letter: str = lib.InputField()
        known: Address = lib.InputField(desc="a known address")
        address: Address = lib.OutputField()
        others: list[Address] = lib.OutputField(desc="other addresses")
        note: Optional[str] = lib.OutputField()  # noqa: UP045 (typing.Optional on purpose)

    return Extract


def chat(lib: Any, history_cls: type) -> type:
    class Chat(lib.Signature):
        """Answer the question in context of the conversation."""

        question: str = lib.InputField()
        history: history_cls = lib.InputField()  # type: ignore[valid-type]
        answer: str = lib.OutputField()

    return Chat


def constrained(lib: Any, history_cls: type) -> type:
    class Rate(lib.Signature):
        """Rate the text."""

        text: str = lib.InputField(desc="the text", min_length=1)
        score: int = lib.OutputField(desc="a score", ge=0, le=10)
        label: str = lib.OutputField()

    return Rate


SIGNATURES = {
    "constrained": constrained,
    "simple": simple,
    "typed": typed,
    "choices": choices,
    "models": models,
    "chat": chat,
}

ADDRESS = Address(street="1 Main St", zip_code=12345, tags=["home"])

# name -> (signature builder, demos, inputs); History values are given as ("history", messages) and built per side.
CASES: dict[str, tuple[str, list[dict[str, Any]], dict[str, Any]]] = {
    "simple-no-demos": ("simple", [], {"question": "What is 2+2?"}),
    "simple-three-demos": (
        "simple",
        [
            {"question": "What is the capital of France?", "answer": "Paris"},
            {"question": "Multi\nline «question»", "answer": "Two\nlines"},
            {"question": "Unicode? é 漢字 😀", "answer": 'Yes: "quoted" and \\ backslash'},
        ],
        {"question": "What is 2+2?"},
    ),
    "simple-incomplete-demos": (
        "simple",
        [
            {"question": "only a question"},
            {"answer": "only an answer"},
            {"question": "q with None answer", "answer": None},
            {"question": "full", "answer": "demo"},
        ],
        {"question": "Now?"},
    ),
    "simple-missing-input": ("simple", [], {}),
    "typed-values": (
        "typed",
        [
            {
                "question": "q",
                "count": 3,
                "ratio": 0.1,
                "flag": True,
                "tags": ["a", "b"],
                "meta": {"x": 1},
                "answer": 7,
                "score": 1e16,
                "ok": False,
                "items": ["one", "two\nlines"],
                "mapping": {"k": 2},
                "maybe": None,
            }
        ],
        {
            "question": "How many?",
            "count": 10**30,
            "ratio": float("nan"),
            "flag": False,
            "tags": [],
            "meta": {"nested": [1, 2.5, None, True, {"deep": "é"}], "inf": float("inf")},
        },
    ),
    "typed-odd-values": (
        "typed",
        [],
        {
            "question": ("a", "tuple"),
            "count": 1.0e-7,
            "ratio": -0.0,
            "flag": None,
            "tags": ["only one"],
            "meta": {1: "int key", "when": datetime.date(2024, 1, 2)},
        },
    ),
    "choices-demos": (
        "choices",
        [{"text": "I love red", "color": Color.RED, "mood": "happy", "level": 3}],
        {"text": "Green makes me calm"},
    ),
    "models-values": (
        "models",
        [
            {
                "letter": "Dear Bob",
                "known": ADDRESS,
                "address": ADDRESS,
                "others": [ADDRESS, Address(street="2 Side", zip_code=1)],
                "note": "n",
            }
        ],
        {"letter": "Write to 3 High St, 99999", "known": ADDRESS},
    ),
    "chat-history": (
        "chat",
        [],
        {
            "question": "And Germany?",
            "history": (
                "history",
                [
                    {"question": "What is the capital of France?", "answer": "Paris"},
                    {"question": "Output only", "answer": "x", "extra": 1},
                    {"answer": "an answer without question"},
                ],
            ),
        },
    ),
    "constrained": ("constrained", [{"text": "great", "score": 9, "label": "good"}], {"text": "meh"}),
    "chat-history-empty": ("chat", [], {"question": "Hi", "history": ("history", [])}),
    "chat-no-history-given": ("chat", [], {"question": "Hi"}),
}


def build_case(name: str, lib: Any, history_cls: type) -> tuple[type, list[dict[str, Any]], dict[str, Any]]:
    """The signature, demos and inputs of case `name`, for the library `lib` with its History class."""
    sig_name, demos, inputs = CASES[name]
    signature = SIGNATURES[sig_name](lib, history_cls)

    def resolve(value: Any) -> Any:
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "history":
            return history_cls(messages=value[1])
        return value

    return signature, [dict(d) for d in demos], {k: resolve(v) for k, v in inputs.items()}
