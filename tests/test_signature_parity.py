"""Signatures built by turbodspy match DSPy 3.4.1's, field for field, on a corpus of strings and classes."""

import enum
import warnings
from typing import Any, Literal, Optional, Union

import dspy
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic.fields import FieldInfo

import turbodspy
from turbodspy import _core


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Person(pydantic.BaseModel):
    name: str
    age: int


STRINGS = [
    "question -> answer",
    "question, context: list[str] -> answer: int, confidence: float",
    "a, b -> c",
    "-> answer",
    "question ->",
    " -> ",
    "a, -> b",
    "a:int->b:float",
    "question,\n    context -> answer",
    "camelCaseInput, snake_case_input, HTMLParser, text2number -> XMLHttpRequest, a__b",
    "flag: bool, count: int, ratio: float, name: str -> ok: bool",
    "items: list[int], mapping: dict[str, list[int]], pair: tuple[int, str] -> out: tuple[int, ...]",
    "a: Optional[int], b: int | None, c: None | str -> d: Union[int, str], e: int | str | None",
    "a: Literal['x', 'y'], b: Literal[1, 2.5, True, None] -> c: Literal[\"yes\", 'no']",
    "a: typing.List[int], b: List[str], c: Dict[str, int] -> d: Any",
    "a: set[int], b: frozenset[str], c: bytes -> d: dict[str, Any]",
    "a: list[()] -> b: tuple[()]",
    "a: (int) -> b",
    "a: NoneType -> b",
    "a: None -> b",
    "café, naïve_field -> résumé",
    "schema_text -> json_output",
    "a: Color, b: list[Person] -> c: Person, d: Optional[Color]",
    "p: Person, a: dict[str, Person] -> b: Color | None",
    "a: Annotated[int, Field(gt=0)] -> b: Annotated[str, Field(description='text')]",
]


def _field_state(field: FieldInfo) -> dict[str, Any]:
    # Every public attribute, plus the private ones pydantic acts on (metadata, qualifiers, completeness).
    return {
        slot: getattr(field, slot)
        for slot in FieldInfo.__slots__
        if slot not in ("_original_assignment", "_original_annotation")
    }


def assert_same_signature(ours: Any, theirs: Any) -> None:
    assert ours.signature == theirs.signature
    assert ours.instructions == theirs.instructions
    assert list(ours.input_fields) == list(theirs.input_fields)
    assert list(ours.output_fields) == list(theirs.output_fields)
    assert list(ours.fields) == list(theirs.fields)
    for name in theirs.fields:
        mine, other = ours.fields[name], theirs.fields[name]
        assert mine.annotation == other.annotation, name
        assert mine.json_schema_extra == other.json_schema_extra, name
        assert list(mine.json_schema_extra) == list(other.json_schema_extra), name
        assert _field_state(mine) == _field_state(other), name
        assert str(mine) == str(other)
    assert repr(ours).replace(ours.__name__, "X", 1) == repr(theirs).replace(theirs.__name__, "X", 1)
    assert ours.__name__ == theirs.__name__
    assert ours.dump_state() == theirs.dump_state()


@pytest.mark.parametrize("text", STRINGS)
def test_string_signature_matches_dspy(text: str) -> None:
    ours = turbodspy.Signature(text)
    theirs = dspy.Signature(text)
    assert_same_signature(ours, theirs)


@pytest.mark.parametrize("text", STRINGS)
def test_string_signature_with_instructions_matches_dspy(text: str) -> None:
    instructions = "  Answer the question.\n\n    Be brief.  "
    assert_same_signature(turbodspy.Signature(text, instructions), dspy.Signature(text, instructions))


@pytest.mark.parametrize("text", STRINGS[:12])
def test_make_signature_and_ensure_signature_match_dspy(text: str) -> None:
    assert_same_signature(turbodspy.make_signature(text), dspy.make_signature(text))
    assert_same_signature(
        turbodspy.make_signature(text, "Do it.", "Named"), dspy.make_signature(text, "Do it.", "Named")
    )
    assert_same_signature(turbodspy.ensure_signature(text), dspy.ensure_signature(text))
    assert_same_signature(turbodspy.ensure_signature(text, "Do it."), dspy.ensure_signature(text, "Do it."))


def test_custom_types_mapping_matches_dspy() -> None:
    class Local(pydantic.BaseModel):
        x: int

    text = "a: Local, b: list[Local] -> c: Optional[Local]"
    custom = {"Local": Local}
    # DSPy resolves only the first name after each colon from the caller; with a mapping both resolve all.
    assert_same_signature(turbodspy.Signature(text, custom_types=custom), dspy.Signature(text, custom_types=custom))
    assert_same_signature(
        turbodspy.make_signature(text, custom_types=custom), dspy.make_signature(text, custom_types=custom)
    )


def test_types_from_the_callers_frame_match_dspy() -> None:
    class Local(pydantic.BaseModel):
        x: int

    text = "a: Local, b: Color -> c: Person"
    assert_same_signature(turbodspy.Signature(text), dspy.Signature(text))
    assert turbodspy.Signature(text).fields["a"].annotation is Local


def _class_pair(lib: Any) -> list[Any]:
    class QA(lib.Signature):
        """Answer questions with short factoid answers."""

        question: str = lib.InputField()
        context: list[str] = lib.InputField(desc="may contain relevant facts")
        answer: int = lib.OutputField(desc="often between 1 and 5 words", ge=0, le=10)

    class Untyped(lib.Signature):
        question = lib.InputField()
        answer = lib.OutputField()

    class Described(lib.Signature):
        """
        Multi-line instructions,
            indented.
        """

        text: str = lib.InputField(description="pydantic description")
        label: Literal["a", "b"] = lib.OutputField(min_length=1)
        score: Optional[float] = lib.OutputField(default=None)  # noqa: UP045 (typing forms on purpose)

    class Child(QA):
        extra: str = lib.InputField()

    class Models(lib.Signature):
        person: Person = lib.InputField()
        color: Color = lib.OutputField()
        maybe: Union[int, None] = lib.OutputField()  # noqa: UP007

    return [QA, Untyped, Described, Child, Models]


def test_class_signatures_match_dspy() -> None:
    for ours, theirs in zip(_class_pair(turbodspy), _class_pair(dspy), strict=True):
        assert_same_signature(ours, theirs)


def test_deprecated_field_arguments_warn_and_are_kept_like_dspy() -> None:
    def build(lib: Any) -> tuple[Any, list[tuple[type, str, str]]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            field = lib.InputField(prefix="Q:", desc="d", format=str)
        return field, [(w.category, str(w.message), w.filename) for w in caught]

    ours, our_warnings = build(turbodspy)
    theirs, their_warnings = build(dspy)
    assert our_warnings == their_warnings
    assert [category for category, _, _ in our_warnings] == [DeprecationWarning, DeprecationWarning]
    assert our_warnings[0][2] == __file__  # attributed to the caller, as DSPy does
    assert ours.json_schema_extra == theirs.json_schema_extra
    assert _field_state(ours) == _field_state(theirs)

    def with_field(lib: Any, field: Any) -> Any:
        class QA(lib.Signature):
            question: str = field
            answer: str = lib.OutputField()

        return QA

    assert_same_signature(with_field(turbodspy, ours), with_field(dspy, theirs))
    assert with_field(turbodspy, ours).fields["question"].json_schema_extra["prefix"] == "Q:"


def test_field_constructors_match_dspy() -> None:
    cases = [
        {},
        {"desc": "a description"},
        {"description": "pydantic text"},
        {"desc": "d", "description": "p"},
        {"gt": 1, "lt": 3, "max_length": 2},
        {"default": 5, "ge": 0},
        {"alias": "other"},
    ]
    for kwargs in cases:
        assert _field_state(turbodspy.InputField(**kwargs)) == _field_state(dspy.InputField(**kwargs))
        assert _field_state(turbodspy.OutputField(**kwargs)) == _field_state(dspy.OutputField(**kwargs))


def _edits(lib: Any) -> list[Any]:
    base = lib.Signature("question, context: list[str] -> answer: int", "Answer it.")
    return [
        base.with_instructions("New instructions."),
        base.append_instructions("Then explain."),
        base.with_updated_fields("answer", desc="A number.", prefix="Number:"),
        base.with_updated_fields("context", type_=list[int]),
        base.prepend("reasoning", lib.OutputField(desc="step by step"), type_=str),
        base.append("confidence", lib.OutputField(), type_=float),
        base.insert(1, "hint", lib.InputField(desc="a hint")),
        base.insert(-1, "notes", lib.InputField()),
        base.delete("context"),
        base.delete("missing"),
        base.load_state(
            {
                "instructions": "Loaded.",
                "fields": [
                    {"prefix": "Q:", "description": "the question"},
                    {"prefix": "C:", "description": "the context"},
                    {"prefix": "A:", "description": "the answer"},
                ],
            }
        ),
    ]


def test_edits_match_dspy() -> None:
    for ours, theirs in zip(_edits(turbodspy), _edits(dspy), strict=True):
        assert_same_signature(ours, theirs)


def test_edits_share_field_extras_like_dspy() -> None:
    # DSPy's edits hand the same `json_schema_extra` dicts to the new class (a later in-place change shows in
    # both); code that relies on that, or on its absence after deepcopy, sees the same here.
    def sharing(lib: Any) -> list[bool]:
        base = lib.Signature("question -> answer")
        edited = [base.with_instructions("x"), base.append("extra", lib.InputField()), base.delete("answer")]
        edited += [base.with_updated_fields("answer", desc="d"), base.load_state(base.dump_state())]
        return [
            e.fields[name].json_schema_extra is base.fields[name].json_schema_extra
            for e in edited
            for name in base.fields
            if name in e.fields
        ]

    assert sharing(turbodspy) == sharing(dspy)


def test_dict_signatures_match_dspy() -> None:
    def fields(lib: Any) -> dict[str, Any]:
        return {
            "question": (str, lib.InputField(desc="q")),
            "context": lib.InputField(),
            "answer": (None, lib.OutputField()),
        }

    assert_same_signature(turbodspy.Signature(fields(turbodspy)), dspy.Signature(fields(dspy)))
    assert_same_signature(
        turbodspy.make_signature(fields(turbodspy), "Do.", "Dicty"), dspy.make_signature(fields(dspy), "Do.", "Dicty")
    )


def test_insert_out_of_range_matches_dspy() -> None:
    ours = turbodspy.Signature("a -> b")
    theirs = dspy.Signature("a -> b")
    with pytest.raises(ValueError) as ours_err:
        ours.insert(5, "c", turbodspy.InputField())
    with pytest.raises(ValueError) as theirs_err:
        theirs.insert(5, "c", dspy.InputField())
    assert str(ours_err.value) == str(theirs_err.value)


def test_equals_matches_dspy() -> None:
    pairs = [
        ("a -> b", "a -> b"),
        ("a -> b", "a -> c"),
        ("a: int -> b", "a -> b"),
        ("a, b -> c", "b, a -> c"),
    ]
    for left, right in pairs:
        ours = turbodspy.Signature(left).equals(turbodspy.Signature(right))
        theirs = dspy.Signature(left).equals(dspy.Signature(right))
        assert ours == theirs, (left, right)
    assert turbodspy.Signature("a -> b").equals(turbodspy.Signature("a -> b", "Other.")) is False
    assert turbodspy.Signature("a -> b").equals("a -> b") is False
    assert turbodspy.Signature("a -> b").equals(dspy.Signature("a -> b")) is True


def test_json_schema_and_instances_match_dspy() -> None:
    text = "question, context: list[str] -> answer: int, confidence: float"
    ours, theirs = turbodspy.Signature(text), dspy.Signature(text)
    assert ours.model_json_schema() == theirs.model_json_schema()
    values = {"question": "q", "context": ["c"], "answer": 3, "confidence": 0.5}
    assert ours(**values).model_dump() == theirs(**values).model_dump()
    with pytest.raises(pydantic.ValidationError):
        ours(**{**values, "answer": "not a number"})


def test_error_conditions_dspy_rejects_are_value_errors_here_too() -> None:
    for text in ["a -> a", "question answer", "a: -> b", "a: list[int -> b", "a: Foo -> b", "a: int -> b: json"]:
        with pytest.raises((ValueError, SyntaxError)):
            dspy.Signature(text)
        with pytest.raises(ValueError):
            turbodspy.Signature(text)


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True))
def test_rust_prefix_matches_dspy_infer_prefix(name: str) -> None:
    expected = dspy.signatures.signature.infer_prefix(name)
    assert _core.infer_ascii_prefix(name) == expected
    assert turbodspy.infer_prefix(name) == expected


@given(st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=12))
def test_python_prefix_matches_dspy_on_unicode(name: str) -> None:
    assert turbodspy.infer_prefix(name) == dspy.signatures.signature.infer_prefix(name)
