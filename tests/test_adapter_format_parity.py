"""ChatAdapter and JSONAdapter build byte-identical messages to DSPy 3.4.1's for the same signature, demos, inputs.

Expected messages come from calling the installed `dspy` at test time.
"""

from __future__ import annotations

import pytest
from adapter_cases import CASES, build_case, signature_lib

import turbodspy
from turbodspy.adapters import ChatAdapter, History, JSONAdapter

dspy = pytest.importorskip("dspy")

ADAPTERS = {"chat": (ChatAdapter, dspy.ChatAdapter), "json": (JSONAdapter, dspy.JSONAdapter)}


def both(case: str):
    ours = build_case(case, signature_lib(), History)
    theirs = build_case(case, dspy, dspy.History)
    return ours, theirs


def assert_same_messages(ours: list[dict], theirs: list[dict]) -> None:
    assert [m["role"] for m in ours] == [m["role"] for m in theirs]
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine == expected
    assert ours == theirs


@pytest.mark.parametrize("style", sorted(ADAPTERS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_format_matches_dspy(case: str, style: str) -> None:
    (sig, demos, inputs), (dsig, ddemos, dinputs) = both(case)
    ours_cls, theirs_cls = ADAPTERS[style]
    assert_same_messages(ours_cls().format(sig, demos, inputs), theirs_cls().format(dsig, ddemos, dinputs))


@pytest.mark.parametrize("style", sorted(ADAPTERS))
def test_format_is_stable_across_calls_and_leaves_inputs_alone(style: str) -> None:
    (sig, demos, inputs), (dsig, ddemos, dinputs) = both("chat-history")
    adapter = ADAPTERS[style][0]()
    before = dict(inputs)
    first = adapter.format(sig, demos, inputs)
    assert inputs == before
    assert adapter.format(sig, demos, inputs) == first == ADAPTERS[style][1]().format(dsig, ddemos, dinputs)


@pytest.mark.parametrize("style", sorted(ADAPTERS))
@pytest.mark.parametrize("case", ["typed-values", "choices-demos", "models-values", "chat-history"])
def test_public_methods_match_dspy(case: str, style: str) -> None:
    (sig, demos, inputs), (dsig, ddemos, dinputs) = both(case)
    ours, theirs = ADAPTERS[style][0](), ADAPTERS[style][1]()
    for method in ("format_field_description", "format_field_structure", "format_task_description"):
        assert getattr(ours, method)(sig) == getattr(theirs, method)(dsig), method
    assert ours.format_system_message(sig) == theirs.format_system_message(dsig)
    assert ours.user_message_output_requirements(sig) == theirs.user_message_output_requirements(dsig)
    plain_inputs = {k: v for k, v in inputs.items() if k != "history"}
    plain_dinputs = {k: v for k, v in dinputs.items() if k != "history"}
    for kwargs in ({}, {"prefix": "PRE", "suffix": "POST"}, {"main_request": True}):
        assert ours.format_user_message_content(sig, plain_inputs, **kwargs) == theirs.format_user_message_content(
            dsig, plain_dinputs, **kwargs
        )
    record = {**plain_inputs, **(demos[0] if demos else {})}
    drecord = {**plain_dinputs, **(ddemos[0] if ddemos else {})}
    for missing in (None, "MISSING"):
        assert ours.format_assistant_message_content(sig, record, missing) == theirs.format_assistant_message_content(
            dsig, drecord, missing
        )
        assert ours.format_assistant_message_content(sig, {}, missing) == theirs.format_assistant_message_content(
            dsig, {}, missing
        )
    assert ours.format_demos(sig, demos) == theirs.format_demos(dsig, ddemos)


def test_conversation_history_matches_dspy_and_consumes_the_field() -> None:
    (sig, _, inputs), (dsig, _, dinputs) = both("chat-history")
    ours, theirs = ChatAdapter(), dspy.ChatAdapter()
    sig_wo, dsig_wo = sig.delete("history"), dsig.delete("history")
    mine = ours.format_conversation_history(sig_wo, "history", inputs)
    expected = theirs.format_conversation_history(dsig_wo, "history", dinputs)
    assert mine == expected
    assert "history" not in inputs


def test_demos_given_as_examples_format_like_dicts() -> None:
    (sig, _, inputs), (dsig, ddemos, dinputs) = both("simple-incomplete-demos")
    examples = [dspy.Example(**d) for d in ddemos]
    assert ChatAdapter().format(sig, examples, inputs) == dspy.ChatAdapter().format(dsig, examples, dinputs)


class Terse(ChatAdapter):
    def format_field_description(self, signature):
        return "Fields: " + ", ".join(signature.fields)

    def user_message_output_requirements(self, signature):
        return "Answer now."


def test_subclass_overrides_are_used_like_dspy() -> None:
    class DspyTerse(dspy.ChatAdapter):
        format_field_description = Terse.format_field_description
        user_message_output_requirements = Terse.user_message_output_requirements

    (sig, demos, inputs), (dsig, ddemos, dinputs) = both("simple-three-demos")
    messages = Terse().format(sig, demos, inputs)
    assert messages[0]["content"].startswith("Fields: question, answer\n")
    assert messages[-1]["content"].endswith("Answer now.")
    assert messages == DspyTerse().format(dsig, ddemos, dinputs)


def test_custom_type_markers_in_text_become_content_blocks_like_dspy() -> None:
    (sig, _, _), (dsig, _, _) = both("simple-no-demos")
    text = 'see <<CUSTOM-TYPE-START-IDENTIFIER>>[{"type": "text", "text": "inner"}]<<CUSTOM-TYPE-END-IDENTIFIER>> end'
    mine = ChatAdapter().format(sig, [], {"question": text})
    assert isinstance(mine[-1]["content"], list)
    assert mine == dspy.ChatAdapter().format(dsig, [], {"question": text})


def test_turbodspy_exports_the_adapters() -> None:
    assert turbodspy.ChatAdapter is ChatAdapter
    assert turbodspy.JSONAdapter is JSONAdapter
    assert turbodspy.History is History
    assert issubclass(ChatAdapter, turbodspy.Adapter)


class Bracketed(ChatAdapter):
    def format_field_with_value(self, fields_with_values):
        return "\n".join(f"<{field.name}>{value}</{field.name}>" for field, value in fields_with_values.items())


class BracketedJSON(JSONAdapter):
    def format_field_with_value(self, fields_with_values, role="user"):
        return "\n".join(f"<{role}:{field.name}>{value}" for field, value in fields_with_values.items())


@pytest.mark.parametrize(("ours_cls", "theirs_base"), [(Bracketed, "ChatAdapter"), (BracketedJSON, "JSONAdapter")])
def test_format_field_with_value_override_shapes_structure_and_demos_like_dspy(ours_cls, theirs_base) -> None:
    theirs_cls = type(
        "Theirs", (getattr(dspy, theirs_base),), {"format_field_with_value": ours_cls.format_field_with_value}
    )
    (sig, demos, inputs), (dsig, ddemos, dinputs) = both("typed-values")
    messages = ours_cls().format(sig, demos, inputs)
    assert "<" in messages[0]["content"] and "<" in messages[2]["content"]
    assert messages == theirs_cls().format(dsig, ddemos, dinputs)
