"""Property tests: formatted outputs parse back to the same values; any completion parses or raises a clear
AdapterParseError; formatting and chat parsing agree with DSPy 3.4.1 on generated values and texts."""

from __future__ import annotations

from typing import Literal

import pytest
from adapter_cases import Address, Color, build_case, signature_lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turbodspy.adapters import ChatAdapter, History, JSONAdapter
from turbodspy.errors import AdapterParseError

dspy = pytest.importorskip("dspy")

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outputs_signature(lib):
    class Outputs(lib.Signature):
        """Produce every kind of value."""

        question: str = lib.InputField()
        text: str = lib.OutputField()
        number: int = lib.OutputField()
        ratio: float = lib.OutputField()
        flag: bool = lib.OutputField()
        words: list[str] = lib.OutputField()
        counts: dict[str, int] = lib.OutputField()
        color: Color = lib.OutputField()
        level: Literal["low", "high"] = lib.OutputField()
        address: Address = lib.OutputField()

    return Outputs


OURS_SIG = outputs_signature(signature_lib())
DSPY_SIG = outputs_signature(dspy)

# Characters that Python's splitlines() treats as line breaks (besides \n) change a text's lines when split
# and rejoined, exactly as in DSPy; text fields are generated without them.
LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
# json.dumps leaves U+0085, U+2028 and U+2029 unescaped, so inside chat sections they split lines too.
one_line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=LINE_BREAKS), max_size=40)
chat_text = one_line_text.filter(
    lambda s: s == s.strip() and not any(line.strip().startswith("[[ ## ") for line in s.split("\n"))
)


def output_values(text_strategy, any_text=any_text, infinity=True):
    return st.fixed_dictionaries(
        {
            "text": text_strategy,
            "number": st.integers(),
            "ratio": st.floats(allow_nan=False, allow_infinity=infinity),
            "flag": st.booleans(),
            "words": st.lists(any_text, max_size=4),
            "counts": st.dictionaries(any_text, st.integers(), max_size=4),
            "color": st.sampled_from(list(Color)),
            "level": st.sampled_from(["low", "high"]),
            "address": st.builds(Address, street=any_text, zip_code=st.integers(), tags=st.lists(any_text, max_size=2)),
        }
    )


@SETTINGS
@given(values=output_values(chat_text, one_line_text))
def test_chat_assistant_message_parses_back_to_the_same_values(values: dict) -> None:
    adapter = ChatAdapter()
    content = adapter.format_assistant_message_content(OURS_SIG, values)
    assert adapter.parse(OURS_SIG, content) == values


@SETTINGS
@given(values=output_values(any_text, infinity=False))  # JSON has no infinity: DSPy writes null
def test_json_assistant_message_parses_back_to_the_same_values(values: dict) -> None:
    adapter = JSONAdapter()
    content = adapter.format_assistant_message_content(OURS_SIG, values)
    assert adapter.parse(OURS_SIG, content) == values


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=8,
)


@SETTINGS
@given(
    question=any_text | st.lists(any_text, max_size=3),
    count=json_values,
    meta=json_values,
    tags=st.lists(any_text, max_size=3) | json_values,
)
def test_format_matches_dspy_on_generated_values(question, count, meta, tags) -> None:
    sig = build_case("typed-values", signature_lib(), History)[0]
    dsig = build_case("typed-values", dspy, dspy.History)[0]
    inputs = {"question": question, "count": count, "meta": meta, "tags": tags}
    demos = [{**inputs, "answer": count, "items": tags, "mapping": meta}]
    for ours, theirs in ((ChatAdapter(), dspy.ChatAdapter()), (JSONAdapter(), dspy.JSONAdapter())):
        assert ours.format(sig, demos, inputs) == theirs.format(dsig, demos, inputs)


marker_names = st.sampled_from(["answer", "score", "completed", "Answer", "answer2", "é", ""])
fragments = st.one_of(
    marker_names.map(lambda n: f"[[ ## {n} ## ]]"),
    st.sampled_from(["[[ ##", "## ]]", "[[ ## answer ##]]", " ", "\n", "\r\n", "\t", "\u2028", "\x1c", "\u3000"]),
    st.sampled_from(["42", "0.5", "True", "[1, 2]", '{"a": 1}', "None", "'x'", "«", "```json"]),
    any_text,
)
completions = st.lists(fragments, max_size=12).map("".join)


def outcome(adapter, signature, completion):
    try:
        return adapter.parse(signature, completion)
    except Exception as e:
        return type(e).__name__


@SETTINGS
@given(completion=completions)
def test_chat_parse_agrees_with_dspy_on_generated_completions(completion: str) -> None:
    for case in ("simple-no-demos", "typed-values"):
        sig = build_case(case, signature_lib(), History)[0]
        dsig = build_case(case, dspy, dspy.History)[0]
        mine = outcome(ChatAdapter(), sig, completion)
        expected = outcome(dspy.ChatAdapter(), dsig, completion)
        assert mine == expected or (isinstance(expected, str) and mine == "AdapterParseError"), (mine, expected)


@SETTINGS
@given(completion=completions | any_text | st.text(alphabet="{}[]\":,' \nabc0123.eE-\\tfnru", max_size=60))
def test_any_completion_parses_or_raises_adapter_parse_error(completion: str) -> None:
    for adapter in (ChatAdapter(), JSONAdapter()):
        try:
            result = adapter.parse(OURS_SIG, completion)
        except AdapterParseError as e:
            assert e.lm_response == completion or adapter is not None
            continue
        assert set(result) == set(OURS_SIG.output_fields)
