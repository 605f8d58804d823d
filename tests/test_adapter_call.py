"""Adapter `__call__`/`acall` around a real `BaseLM`: format, call, parse each choice, JSON fallback, errors.

`ScriptedLM` is a BaseLM subclass whose `forward` answers from a script (as a provider would, in OpenAI's
response shape), so the whole LM call path (kwargs merge, history, outputs) runs for real.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest
from adapter_cases import build_case, signature_lib

import turbodspy
from turbodspy.adapters import ChatAdapter, History, JSONAdapter
from turbodspy.errors import AdapterParseError, ContextWindowExceededError, LMServerError
from turbodspy.utils.callback import BaseCallback


class ScriptedLM(turbodspy.BaseLM):
    """Answers each call with the next scripted item: a list of choice texts (or dicts), or an exception."""

    def __init__(self, script: list[Any], *, schema: bool = False, params: set[str] | None = None):
        super().__init__("scripted/model", cache=False)
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []
        self._schema = schema
        self._params = params or set()

    @property
    def supports_response_schema(self) -> bool:
        return self._schema

    @property
    def supported_params(self) -> set[str]:
        return self._params

    def forward(self, prompt=None, messages=None, **kwargs):
        self.calls.append({"messages": messages, **kwargs})
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        choices = []
        for choice in item:
            if isinstance(choice, dict):
                choices.append({"message": {"content": choice["text"]}, "logprobs": choice.get("logprobs")})
            else:
                choices.append({"message": {"content": choice}})
        return {"choices": choices, "usage": {}, "model": "scripted/model"}


def qa():
    return build_case("simple-no-demos", signature_lib(), History)


def typed():
    return build_case("typed-values", signature_lib(), History)


def test_call_formats_calls_lm_and_parses() -> None:
    sig, demos, inputs = qa()
    lm = ScriptedLM([["[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"]])
    adapter = ChatAdapter()
    result = adapter(lm, {"temperature": 0.5}, sig, demos, inputs)
    assert result == [{"answer": "4"}]
    assert lm.calls[0]["messages"] == adapter.format(sig, demos, inputs)
    assert lm.calls[0]["temperature"] == 0.5


def test_each_completion_parses_into_its_own_dict() -> None:
    sig, demos, inputs = qa()
    lm = ScriptedLM([[f"[[ ## answer ## ]]\n{i}" for i in range(3)]])
    assert ChatAdapter()(lm, {"n": 3}, sig, demos, inputs) == [{"answer": "0"}, {"answer": "1"}, {"answer": "2"}]


def test_logprobs_are_kept_with_the_parsed_fields() -> None:
    sig, demos, inputs = qa()
    logprobs = {"content": [{"token": "4", "logprob": -0.1}]}
    lm = ScriptedLM([[{"text": "[[ ## answer ## ]]\n4", "logprobs": logprobs}]])
    assert ChatAdapter()(lm, {"logprobs": True}, sig, demos, inputs) == [{"answer": "4", "logprobs": logprobs}]


def test_unparseable_chat_completion_is_retried_with_json_adapter() -> None:
    sig, demos, inputs = typed()
    lm = ScriptedLM(
        [
            ["I think the answer is 4."],
            ['{"answer": 4, "score": 0.5, "ok": true, "items": [], "mapping": {}}'],
        ]
    )
    result = ChatAdapter()(lm, {}, sig, demos, inputs)
    assert result == [{"answer": 4, "score": 0.5, "ok": True, "items": [], "mapping": {}, "maybe": None}]
    assert len(lm.calls) == 2
    assert lm.calls[1]["messages"] == JSONAdapter().format(sig, demos, inputs)


def test_fallback_can_be_turned_off() -> None:
    sig, demos, inputs = qa()
    lm = ScriptedLM([["no markers"]])
    with pytest.raises(AdapterParseError) as info:
        ChatAdapter(use_json_adapter_fallback=False)(lm, {}, sig, demos, inputs)
    assert info.value.lm_response == "no markers"
    assert len(lm.calls) == 1


@pytest.mark.parametrize("error", [ContextWindowExceededError(model="scripted/model"), LMServerError("boom")])
def test_lm_errors_propagate_without_json_fallback(error: Exception) -> None:
    sig, demos, inputs = qa()
    lm = ScriptedLM([error, ['{"answer": "should not be asked"}']])
    lm.num_retries = 0
    with pytest.raises(type(error)):
        ChatAdapter()(lm, {}, sig, demos, inputs)
    assert len(lm.calls) == 1


def test_empty_completion_is_a_parse_error() -> None:
    sig, demos, inputs = qa()
    lm = ScriptedLM([[""], [""]])
    with pytest.raises(AdapterParseError, match="empty or null"):
        ChatAdapter()(lm, {}, sig, demos, inputs)


def test_json_adapter_requests_structured_outputs_when_the_model_supports_them() -> None:
    sig, demos, inputs = build_case("models-values", signature_lib(), History)
    answer = '{"address": {"street": "s", "zip_code": 1, "tags": []}, "others": [], "note": null}'
    lm = ScriptedLM([[answer]], schema=True, params={"response_format"})
    result = JSONAdapter()(lm, {}, sig, demos, inputs)
    assert result[0]["address"].street == "s"
    response_format = lm.calls[0]["response_format"]
    assert issubclass(response_format, pydantic.BaseModel)
    schema = response_format.model_json_schema()
    assert schema["required"] == ["address", "others", "note"]
    assert schema["additionalProperties"] is False
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())


def test_json_adapter_asks_for_a_json_object_otherwise() -> None:
    sig, demos, inputs = typed()  # has a dict[str, int] output: no strict schema possible
    answer = '{"answer": 1, "score": 1.0, "ok": true, "items": [], "mapping": {}}'
    lm = ScriptedLM([[answer]], schema=True, params={"response_format"})
    JSONAdapter()(lm, {}, sig, demos, inputs)
    assert lm.calls[0]["response_format"] == {"type": "json_object"}

    sig, demos, inputs = qa()
    lm = ScriptedLM([['{"answer": "x"}']], schema=False, params={"response_format"})
    JSONAdapter()(lm, {}, sig, demos, inputs)
    assert lm.calls[0]["response_format"] == {"type": "json_object"}

    lm = ScriptedLM([['{"answer": "x"}']], schema=True, params=set())
    JSONAdapter()(lm, {}, sig, demos, inputs)
    assert "response_format" not in lm.calls[0]


def test_acall_matches_call() -> None:
    sig, demos, inputs = typed()
    script = [["garbage"], ['{"answer": 2, "score": 2, "ok": false, "items": ["a"], "mapping": {"x": 1}}']]
    sync_lm, async_lm = ScriptedLM(script), ScriptedLM(script)
    expected = ChatAdapter()(sync_lm, {}, sig, demos, inputs)
    got = asyncio.run(ChatAdapter().acall(async_lm, {}, sig, demos, inputs))
    assert got == expected
    assert [c["messages"] for c in async_lm.calls] == [c["messages"] for c in sync_lm.calls]


class AdapterRecorder(BaseCallback):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_adapter_format_start(self, call_id, instance, inputs):
        self.events.append(("format_start", sorted(inputs)))

    def on_adapter_format_end(self, call_id, outputs, exception=None):
        self.events.append(("format_end", len(outputs)))

    def on_adapter_parse_start(self, call_id, instance, inputs):
        self.events.append(("parse_start", inputs["completion"]))

    def on_adapter_parse_end(self, call_id, outputs, exception=None):
        self.events.append(("parse_end", outputs))


def test_format_and_parse_report_to_callbacks_once() -> None:
    sig, demos, inputs = qa()
    recorder = AdapterRecorder()
    lm = ScriptedLM([["[[ ## answer ## ]]\n4"]])
    with turbodspy.context(callbacks=[recorder]):
        JSONAdapter().format(sig, demos, inputs)
        ChatAdapter()(lm, {}, sig, demos, inputs)
    assert recorder.events == [
        ("format_start", ["demos", "inputs", "signature"]),
        ("format_end", 2),
        ("format_start", ["demos", "inputs", "signature"]),
        ("format_end", 2),
        ("parse_start", "[[ ## answer ## ]]\n4"),
        ("parse_end", {"answer": "4"}),
    ]


def test_adapter_callbacks_given_to_the_adapter_see_format_and_parse() -> None:
    sig, demos, inputs = qa()
    recorder = AdapterRecorder()
    lm = ScriptedLM([["[[ ## answer ## ]]\n4"]])
    assert ChatAdapter(callbacks=[recorder])(lm, {}, sig, demos, inputs) == [{"answer": "4"}]
    assert [event for event, _ in recorder.events] == ["format_start", "format_end", "parse_start", "parse_end"]


def test_format_and_parse_replaced_on_the_instance_are_used_by_call() -> None:
    sig, demos, inputs = qa()
    lm = ScriptedLM([["ignored"]])
    adapter = ChatAdapter()
    adapter.format = lambda signature, demos, inputs: [{"role": "user", "content": "mine"}]
    adapter.parse = lambda signature, completion: {"answer": f"parsed {completion}"}
    assert adapter(lm, {}, sig, demos, inputs) == [{"answer": "parsed ignored"}]
    assert lm.calls[0]["messages"] == [{"role": "user", "content": "mine"}]


@pytest.mark.parametrize(
    "parsed",
    [
        {"extra": 1, "note": "n", "answer": "a"},  # out of order, with a field the signature does not have
        {"note": "n"},  # a required field missing
        {"answer": "a", "note": "n"},
    ],
)
def test_custom_parse_results_are_completed_as_dspy_does(parsed: dict[str, Any]) -> None:
    dspy = pytest.importorskip("dspy")

    def adapter_class(base: type) -> type:
        class OwnParse(base):
            def parse(self, signature, completion):
                return dict(parsed)

        return OwnParse

    ours = adapter_class(ChatAdapter)()(
        ScriptedLM([["anything"]]), {}, turbodspy.Signature("question -> answer, note"), [], {"question": "q"}
    )
    with dspy.context(lm=dspy.utils.DummyLM([{"answer": "x", "note": "y"}])):
        theirs = adapter_class(dspy.ChatAdapter)()(
            dspy.settings.lm, {}, dspy.Signature("question -> answer, note"), [], {"question": "q"}
        )
    assert [list(v.items()) for v in ours] == [list(v.items()) for v in theirs]


@pytest.mark.parametrize("style", ["chat", "json"])
def test_new_instructions_on_a_signature_reach_the_next_prompt(style: str) -> None:
    dspy = pytest.importorskip("dspy")
    ours_cls, theirs_cls = {"chat": (ChatAdapter, dspy.ChatAdapter), "json": (JSONAdapter, dspy.JSONAdapter)}[style]
    ours = turbodspy.Signature("question -> answer", "Old task.")
    theirs = dspy.Signature("question -> answer", "Old task.")
    ours_cls().format(ours, [], {"question": "q"})  # compiled for the old instructions
    ours.instructions = theirs.instructions = "New task."
    got = ours_cls().format(ours, [], {"question": "q"})
    assert "New task." in got[0]["content"]
    assert got == theirs_cls().format(theirs, [], {"question": "q"})


def test_a_subclass_of_a_compiled_signature_gets_its_own_prompt() -> None:
    dspy = pytest.importorskip("dspy")

    def classes(lib: Any) -> tuple[type, type]:
        class Base(lib.Signature):
            """Answer the question."""

            question: str = lib.InputField()
            answer: str = lib.OutputField()

        class Longer(Base):
            """Answer the question with a source."""

            source: str = lib.OutputField()

        return Base, Longer

    (base, longer), (dbase, dlonger) = classes(turbodspy), classes(dspy)
    adapter = ChatAdapter()
    adapter.format(base, [], {"question": "q"})  # the parent compiles first
    assert adapter.format(longer, [], {"question": "q"}) == dspy.ChatAdapter().format(dlonger, [], {"question": "q"})
    assert adapter.parse(longer, "[[ ## answer ## ]]\na\n\n[[ ## source ## ]]\ns") == {"answer": "a", "source": "s"}
    base.__doc__ = dbase.__doc__ = "Answer briefly."  # set directly rather than through `instructions`
    assert adapter.format(base, [], {"question": "q"}) == dspy.ChatAdapter().format(dbase, [], {"question": "q"})
