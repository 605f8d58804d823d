"""Parsing completions into typed fields: ChatAdapter at `[[ ## name ## ]]` markers, JSONAdapter from JSON.

Results (or the fact of failing) are compared with the installed DSPy 3.4.1's on the same completions.
"""

from __future__ import annotations

import pytest
from adapter_cases import Address, Color, build_case, signature_lib

from turbodspy.adapters import ChatAdapter, History, JSONAdapter
from turbodspy.errors import AdapterParseError

dspy = pytest.importorskip("dspy")


def sigs(case: str) -> tuple[type, type]:
    return build_case(case, signature_lib(), History)[0], build_case(case, dspy, dspy.History)[0]


def dspy_result(adapter, signature, completion):
    try:
        return adapter.parse(signature, completion)
    except Exception as e:  # DSPy's own parse error type, or pydantic's
        return type(e).__name__


def our_result(adapter, signature, completion):
    try:
        return adapter.parse(signature, completion)
    except AdapterParseError:
        return "AdapterParseError"
    except Exception as e:
        return type(e).__name__


CHAT_COMPLETIONS = {
    "simple-no-demos": [
        "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]",
        "Sure!\n[[ ## answer ## ]]\n  multi\n  line \n\n",
        "[[ ## answer ## ]] inline answer\ncontinues",
        "   [[ ## answer ## ]]\nindented header",
        "[[ ## answer ## ]]\nfirst\n[[ ## answer ## ]]\nsecond",
        "[[ ## Answer ## ]]\nwrong case",
        "[[ ##answer## ]]\nno spaces",
        "no markers at all",
        "",
        "[[ ## answer ## ]]",
        "[[ ## answer ## ]]\r\nwindows\r\nlines\r\n",
        "[[ ## answer ## ]]\nline\u2028separator\x0bvt",
    ],
    "typed-values": [
        '[[ ## answer ## ]]\n42\n[[ ## score ## ]]\n0.5\n[[ ## ok ## ]]\nTrue\n[[ ## items ## ]]\n["a", "b"]\n'
        '[[ ## mapping ## ]]\n{"k": 1}\n[[ ## maybe ## ]]\nNone\n[[ ## completed ## ]]',
        "[[ ## answer ## ]]\n 7 \n[[ ## score ## ]]\n1e3\n[[ ## ok ## ]]\nfalse\n[[ ## items ## ]]\n['x', 'y']\n"
        '[[ ## mapping ## ]]\n```json\n{"k": 2}\n```',
        "[[ ## answer ## ]]\nseven\n[[ ## score ## ]]\n1\n[[ ## ok ## ]]\nyes\n"
        "[[ ## items ## ]]\n[]\n[[ ## mapping ## ]]\n{}",
        "[[ ## answer ## ]]\n1\n[[ ## score ## ]]\n2\n[[ ## ok ## ]]\nTrue\n"
        "[[ ## items ## ]]\n[1, 2]\n[[ ## mapping ## ]]\n{}",
        "[[ ## answer ## ]]\n3\n[[ ## score ## ]]\n.5\n[[ ## ok ## ]]\n1\n"
        "[[ ## items ## ]]\n(1, 2)\n[[ ## mapping ## ]]\n{'a': 1,}",
        "[[ ## score ## ]]\n2.5\n[[ ## answer ## ]]\n1",
    ],
    "choices-demos": [
        "[[ ## color ## ]]\nred\n[[ ## mood ## ]]\nhappy\n[[ ## level ## ]]\n2",
        "[[ ## color ## ]]\nGREEN\n[[ ## mood ## ]]\n'sad'\n[[ ## level ## ]]\nLiteral[3]",
        "[[ ## color ## ]]\nblue\n[[ ## mood ## ]]\nhappy\n[[ ## level ## ]]\n1",
        "[[ ## color ## ]]\nred\n[[ ## mood ## ]]\nit's fine\n[[ ## level ## ]]\n4",
        "[[ ## color ## ]]\nred\n[[ ## mood ## ]]\nHappy\n[[ ## level ## ]]\n1",
    ],
    "constrained": [
        "[[ ## score ## ]]\n11\n[[ ## label ## ]]\nok",
        "[[ ## score ## ]]\n5\n[[ ## label ## ]]\nok",
    ],
    "models-values": [
        '[[ ## address ## ]]\n{"street": "3 High St", "zip_code": 99999}\n'
        "[[ ## others ## ]]\n[]\n[[ ## note ## ]]\nnone",
        '[[ ## address ## ]]\n```json\n{"street": "3 High St", "zip_code": "99999", "tags": ["a"]}\n```\n'
        '[[ ## others ## ]]\n[{"street": "x", "zip_code": 1}]',
        '[[ ## address ## ]]\n{"street": "3 High St"}\n[[ ## others ## ]]\n[]\n[[ ## note ## ]]\nx',
    ],
}

JSON_COMPLETIONS = {
    "simple-no-demos": [
        '{"answer": "Paris"}',
        '```json\n{"answer": "Paris"}\n```',
        'Here you go: {"answer": "Paris"} hope it helps',
        '{"answer": "Paris",}',
        "{'answer': 'Paris'}",
        '{"answer": "Paris"',
        '{"answer": 42}',
        '{"answer": {"nested": [1, 2]}}',
        '{"answer": "x", "extra": 1}',
        '{"other": 1}',
        "[1, 2]",
        "no json",
        "",
    ],
    "typed-values": [
        '{"answer": 1, "score": 0.5, "ok": true, "items": ["a"], "mapping": {"k": 1}, "maybe": null}',
        '{"answer": "1", "score": "2.5", "ok": "True", "items": "[\\"a\\"]", "mapping": "{\\"k\\": 1}"}',
        '{"answer": "one", "score": 1, "ok": true, "items": [], "mapping": {}}',
        '{"answer": 12345678901234567890, "score": 1e400, "ok": false, "items": [], "mapping": {}}',
    ],
    "choices-demos": [
        '{"color": "red", "mood": "happy", "level": 3}',
        '{"color": "GREEN", "mood": "sad", "level": "2"}',
        '{"color": "blue", "mood": "happy", "level": 1}',
    ],
    "models-values": [
        '{"address": {"street": "s", "zip_code": 1}, "others": [{"street": "t", "zip_code": 2}], "note": null}',
        '{"address": {"street": "s"}, "others": []}',
    ],
}


@pytest.mark.parametrize(("case", "completion"), [(c, t) for c, texts in CHAT_COMPLETIONS.items() for t in texts])
def test_chat_parse_matches_dspy(case: str, completion: str) -> None:
    sig, dsig = sigs(case)
    mine = our_result(ChatAdapter(), sig, completion)
    expected = dspy_result(dspy.ChatAdapter(), dsig, completion)
    if isinstance(expected, str):
        assert mine == "AdapterParseError", (mine, expected)
    else:
        assert mine == expected


@pytest.mark.parametrize(("case", "completion"), [(c, t) for c, texts in JSON_COMPLETIONS.items() for t in texts])
def test_json_parse_matches_dspy(case: str, completion: str) -> None:
    sig, dsig = sigs(case)
    mine = our_result(JSONAdapter(), sig, completion)
    expected = dspy_result(dspy.JSONAdapter(), dsig, completion)
    if isinstance(expected, str):
        assert mine == "AdapterParseError", (mine, expected)
    else:
        assert mine == expected


def test_chat_parse_coerces_types() -> None:
    sig, _ = sigs("typed-values")
    completion = (
        '[[ ## answer ## ]]\n42\n[[ ## score ## ]]\n0.25\n[[ ## ok ## ]]\nfalse\n[[ ## items ## ]]\n["a"]\n'
        '[[ ## mapping ## ]]\n{"k": 3}\n[[ ## completed ## ]]'
    )
    assert ChatAdapter().parse(sig, completion) == {
        "answer": 42,
        "score": 0.25,
        "ok": False,
        "items": ["a"],
        "mapping": {"k": 3},
        "maybe": None,
    }


def test_enum_literal_and_model_fields_parse_to_their_types() -> None:
    sig, _ = sigs("choices-demos")
    got = ChatAdapter().parse(sig, '[[ ## color ## ]]\ngreen\n[[ ## mood ## ]]\n"sad"\n[[ ## level ## ]]\n2')
    assert got == {"color": Color.GREEN, "mood": "sad", "level": 2}
    sig, _ = sigs("models-values")
    got = JSONAdapter().parse(sig, '{"address": {"street": "s", "zip_code": "7"}, "others": [], "note": "n"}')
    assert got["address"] == Address(street="s", zip_code=7)


def test_parse_error_names_adapter_completion_and_missing_fields() -> None:
    sig, _ = sigs("typed-values")
    completion = "[[ ## answer ## ]]\n1\n[[ ## score ## ]]\n2.0"
    with pytest.raises(AdapterParseError) as info:
        ChatAdapter().parse(sig, completion)
    err = info.value
    assert err.adapter_name == "ChatAdapter"
    assert err.lm_response == completion
    assert err.signature is sig
    assert set(err.parsed_result) == {"answer", "score", "maybe"}
    assert "ok" in str(err)


def test_invalid_value_error_says_which_field() -> None:
    sig, _ = sigs("typed-values")
    with pytest.raises(AdapterParseError, match="Failed to parse field answer"):
        ChatAdapter().parse(sig, "[[ ## answer ## ]]\nseven")
    with pytest.raises(AdapterParseError, match="JSON object"):
        JSONAdapter().parse(sig, "nothing here")


@pytest.mark.parametrize("not_a_signature", ["question -> answer", None, 42])
def test_non_signature_is_a_clear_type_error(not_a_signature) -> None:
    with pytest.raises(TypeError, match="Signature class"):
        ChatAdapter().format(not_a_signature, [], {})
    with pytest.raises(TypeError, match="Signature class"):
        JSONAdapter().parse(not_a_signature, "{}")
