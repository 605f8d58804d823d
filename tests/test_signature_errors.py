"""Malformed signature strings raise SignatureSyntaxError (a ValueError) saying what is wrong and where."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import turbodspy
from turbodspy import SignatureSyntaxError

# (signature, position the error points at, words the message must contain)
CASES = [
    ("question", None, "no '->'"),
    ("question answer", 9, "expected ',' between fields or '->'"),
    ("a -> b -> c", 7, "second '->'"),
    ("a, , b -> c", 3, "empty field name"),
    (", a -> b", 0, "empty field name"),
    ("a, b -> a", 8, "'a' is used twice (first at position 0)"),
    ("a, a -> b", 3, "'a' is used twice"),
    ("1a -> b", 0, "'1a' is not a valid field name"),
    ("a-b -> c", 1, "unexpected '-'"),
    ("class -> b", 0, "'class' is reserved (a Python keyword)"),
    ("a -> _b", 5, "'_b' is reserved"),
    ("instructions -> b", 0, "'instructions' is reserved (it is part of the Signature API)"),
    ("a -> fields", 5, "'fields' is reserved"),
    ("a: Foo -> b", 3, "Unknown name: Foo"),
    ("a: list[Foo] -> b", 8, "custom_types={'Foo': Foo}"),
    ("a: typing.Nope -> b", 10, "Unknown attribute: Nope"),
    ("a: list[int -> b", 7, "'[' is never closed"),
    ("a: dict[str, int -> b", 7, "'[' is never closed"),
    ("a: list[int)] -> b", 11, "')' does not match the open '['"),
    ("a: int] -> b", 6, "']' closes nothing"),
    ("a: -> b", 3, "a ':' with no type after it"),
    ("a: list[] -> b", 8, "a ':' with no type after it"),
    ("a: Literal['x] -> b", 11, "string literal is never closed"),
    ("a=1 -> b", 1, "default values are not supported"),
    ("a, *, b -> c", 3, "'*' and '**' parameters are not supported"),
    ("a: int -> b: json", 10, "Field types must be types"),
    ("a: int[str] -> b", 6, "cannot take [str]"),
    ("a: Optional[int, str] -> b", 11, "Optional must have exactly one type argument"),
]


@pytest.mark.parametrize(("text", "position", "words"), CASES)
def test_bad_signature_says_what_and_where(text: str, position: int | None, words: str) -> None:
    with pytest.raises(SignatureSyntaxError) as err:
        turbodspy.Signature(text)
    assert isinstance(err.value, ValueError)
    assert words in str(err.value)
    assert err.value.position == position
    assert err.value.signature == text
    assert repr(text)[1:-1] in str(err.value) or text in str(err.value)
    if position is not None:
        # The message shows the signature with a caret under the offending character.
        lines = str(err.value).splitlines()
        assert lines[-2] == "    " + text
        assert lines[-1] == "    " + " " * position + "^"


def test_multiline_signatures_report_line_and_column() -> None:
    text = "question,\n  context: list[str\n  -> answer"
    with pytest.raises(SignatureSyntaxError) as err:
        turbodspy.Signature(text)
    assert "at line 2, column 16" in str(err.value)
    assert str(err.value).splitlines()[-2:] == ["      context: list[str", "                   ^"]


def test_every_entry_point_raises_the_same_error() -> None:
    for build in (
        lambda: turbodspy.Signature("a -> b -> c"),
        lambda: turbodspy.Signature("a -> b -> c", "instructions"),
        lambda: turbodspy.make_signature("a -> b -> c"),
        lambda: turbodspy.ensure_signature("a -> b -> c"),
        lambda: turbodspy.Signature("a -> b -> c", custom_types={"X": int}),
    ):
        with pytest.raises(SignatureSyntaxError, match="second '->'"):
            build()


def test_a_failed_build_leaves_nothing_cached() -> None:
    with pytest.raises(SignatureSyntaxError):
        turbodspy.Signature("a: NotYetDefined -> b")

    class NotYetDefined:
        pass

    assert turbodspy.Signature("a: NotYetDefined -> b").fields["a"].annotation is NotYetDefined


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("ab_1 :,->[]()|.'\"\\\n\té*=")), max_size=40))
def test_any_text_parses_or_raises_signature_syntax_error(text: str) -> None:
    try:
        turbodspy.Signature(text, custom_types={"a": int, "b": str})
    except SignatureSyntaxError as err:
        assert err.signature == text
        assert err.position is None or 0 <= err.position <= len(text)
