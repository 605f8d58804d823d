"""Signature behaviour beyond field-for-field parity: caching, type lookup, the deferred pydantic build."""

import enum
import inspect
import subprocess
import sys
import threading
import typing
from typing import Literal, Optional

import pydantic
import pytest

import turbodspy
from turbodspy import InputField, OutputField, Signature
from turbodspy.signatures import signature as signature_module


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class Answer(pydantic.BaseModel):
    text: str
    score: float


def test_repeating_a_string_returns_the_cached_class() -> None:
    text = "question, context: list[str] -> answer: int, confidence: float"
    first = Signature(text)
    assert Signature(text) is first
    assert turbodspy.ensure_signature(text) is first
    assert Signature(text, "Other instructions.") is not first
    assert Signature(text, "Other instructions.") is Signature(text, "Other instructions.")
    assert turbodspy.make_signature(text, signature_name="Named") is not first
    assert turbodspy.make_signature(text, signature_name="Named").__name__ == "Named"


def test_changing_instructions_of_a_cached_class_does_not_leak_into_later_builds() -> None:
    text = "leaky_question -> leaky_answer"
    first = Signature(text)
    first.instructions = "Changed in place."
    second = Signature(text)
    assert second is not first
    assert first.instructions == "Changed in place."
    assert second.instructions == "Given the fields `leaky_question`, produce the fields `leaky_answer`."


def test_names_resolve_from_the_callers_scope_and_the_cache_follows_them() -> None:
    def build() -> type:
        class Local(pydantic.BaseModel):
            value: int

        return Signature("item: Local, items: list[Local] -> best: Optional[Local]"), Local

    first, first_local = build()
    second, second_local = build()
    assert first.fields["item"].annotation is first_local
    assert first.fields["items"].annotation == list[first_local]
    assert first.fields["best"].annotation == Optional[first_local]  # noqa: UP045 (the typing form is built)
    # A different `Local` is a different class, even for the same string.
    assert second is not first
    assert second.fields["item"].annotation is second_local


def test_every_call_form_finds_the_callers_types() -> None:
    class Local(pydantic.BaseModel):
        value: int

    text = "item: Local -> other: Local"
    forms = [
        Signature(text),
        Signature(text, "Instructions."),
        Signature(text, instructions="Instructions."),
        Signature(text, "Instructions.", "Named"),
        Signature(text, signature_name="Named"),
        turbodspy.ensure_signature(text),
    ]
    for sig in forms:
        assert sig.fields["item"].annotation is Local
    assert forms[3].__name__ == "Named"
    assert forms[2].instructions == "Instructions."
    assert Signature(signature="a -> b").signature == "a -> b"
    with pytest.raises(TypeError):
        Signature(text, "Instructions.", "Named", None, "too many")


def test_module_level_models_enums_and_literals() -> None:
    sig = Signature("mood: Mood, options: Literal['a', 'b'] -> answer: Answer, moods: dict[str, Mood]")
    assert sig.fields["mood"].annotation is Mood
    assert sig.fields["options"].annotation == Literal["a", "b"]
    assert sig.fields["answer"].annotation is Answer
    assert sig.fields["moods"].annotation == dict[str, Mood]
    assert sig.fields["mood"].json_schema_extra["IS_TYPE_UNDEFINED"] is False


def test_dotted_names_resolve_through_the_callers_modules() -> None:
    sig = Signature("a: typing.Optional[int], b: pydantic.BaseModel -> c: enum.Enum")
    assert sig.fields["a"].annotation == typing.Optional[int]  # noqa: UP045
    assert sig.fields["b"].annotation is pydantic.BaseModel
    assert sig.fields["c"].annotation is enum.Enum


def test_custom_types_take_precedence_and_key_the_cache() -> None:
    class First:
        pass

    class Second:
        pass

    a = Signature("x: Thing -> y", custom_types={"Thing": First})
    b = Signature("x: Thing -> y", custom_types={"Thing": Second})
    assert a.fields["x"].annotation is First
    assert b.fields["x"].annotation is Second
    assert Signature("x: Thing -> y", custom_types={"Thing": First}) is a
    assert turbodspy.make_signature("x: Thing -> y", custom_types={"Thing": First}).fields["x"].annotation is First


def test_string_signatures_work_as_pydantic_models() -> None:
    sig = Signature("question, context: list[str] -> answer: int")
    instance = sig(question="q", context=["a", "b"], answer="3")
    assert instance.answer == 3
    assert instance.model_dump() == {"question": "q", "context": ["a", "b"], "answer": 3}
    with pytest.raises(pydantic.ValidationError):
        sig(question="q", context="not a list", answer=1)
    assert str(inspect.signature(sig)) == "(*, question: str, context: list[str], answer: int) -> None"
    assert sig.model_json_schema()["required"] == ["question", "context", "answer"]


def test_the_base_signature_keeps_its_own_validator() -> None:
    Signature("x -> y")(x="1", y="2")
    assert Signature.model_json_schema()["properties"] == {}
    assert str(inspect.signature(Signature)) == "() -> None"


def test_subclassing_a_string_signature() -> None:
    base = Signature("question -> answer", "Answer.")

    class WithContext(base):
        context: list[str] = InputField(desc="facts")

    assert list(WithContext.fields) == ["question", "context", "answer"]
    assert WithContext.instructions == "Answer."
    assert WithContext(question="q", context=[], answer="a").answer == "a"
    assert WithContext.fields["context"].json_schema_extra == {
        "desc": "facts",
        "__dspy_field_type": "input",
        "prefix": "Context:",
    }


def test_class_signature_fields_default_to_str_and_are_marked() -> None:
    class QA(Signature):
        """Answer."""

        question = InputField()
        answer: int = OutputField()

    assert QA.fields["question"].annotation is str
    assert QA.fields["question"].json_schema_extra["IS_TYPE_UNDEFINED"] is True
    assert "IS_TYPE_UNDEFINED" not in QA.fields["answer"].json_schema_extra
    assert QA.signature == "question -> answer"


def test_class_signature_fields_must_be_declared_as_dspy_fields() -> None:
    with pytest.raises(TypeError, match="must be declared with InputField or OutputField"):

        class Bad(Signature):
            """Instructions."""

            question: str = InputField()
            answer: str = pydantic.Field()


def test_derived_class_inherits_instructions() -> None:
    class Parent(Signature):
        """Parent instructions."""

        question: str = InputField()

    class Child(Parent):
        answer: str = OutputField()

    assert Child.instructions == "Parent instructions."


def test_threads_building_signatures_see_consistent_classes() -> None:
    results: list[type] = []
    errors: list[BaseException] = []

    def work(start: int) -> None:
        try:
            for i in range(50):
                results.append(Signature(f"q{(start + i) % 20}, ctx: list[str] -> a: int"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 200
    for sig in results:
        first = next(iter(sig.input_fields))
        assert sig.signature == f"{first}, ctx -> a"
        assert sig.fields["ctx"].annotation == list[str]


def test_shadowing_names_go_through_pydantic_and_warn_like_dspy() -> None:
    with pytest.warns(UserWarning, match='Field name "schema" in "StringSignature" shadows an attribute'):
        sig = Signature("schema -> output")
    assert list(sig.fields) == ["schema", "output"]


def test_annotated_types_keep_their_constraints() -> None:
    sig = Signature("a: Annotated[int, Field(gt=0)] -> b")
    assert sig.fields["a"].annotation is int
    with pytest.raises(pydantic.ValidationError):
        sig(a=0, b="x")
    assert sig(a=1, b="x").a == 1


def test_cache_is_bounded_and_keeps_the_strings_in_use() -> None:
    limit = signature_module._CLASS_CACHE_LIMIT
    hot = Signature("hot_question -> hot_answer")
    for i in range(limit * 3):
        Signature(f"bounded_{i} -> out")
        assert Signature("hot_question -> hot_answer") is hot
    assert len(signature_module._classes) <= limit
    assert Signature("bounded_0 -> out") is not Signature("bounded_0 -> out", "Other.")


def test_a_class_still_in_use_is_found_after_many_other_strings() -> None:
    held = Signature("held_question -> held_answer")
    for i in range(signature_module._CLASS_CACHE_LIMIT * 3):
        Signature(f"pushed_out_{i} -> out")
    assert Signature("held_question -> held_answer") is held
    for i in range(signature_module._CLASS_CACHE_LIMIT * 3):
        Signature(f"pushed_again_{i} -> out")
    held.instructions = "Changed while pushed out."
    rebuilt = Signature("held_question -> held_answer")
    assert rebuilt is not held
    assert rebuilt.instructions == "Given the fields `held_question`, produce the fields `held_answer`."


def test_import_stays_cheap() -> None:
    code = "import sys, turbodspy; print(sorted(m for m in ('dspy', 'litellm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
