"""The local LLM server of `turbodspy.testing`, driven through LiteLLM's real provider code over real HTTP."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import http.client
import json
import threading
import urllib.error
import urllib.request

import litellm
import pytest

from turbodspy.testing import LocalLLMServer, Reply

# LiteLLM's pydantic types warn on first use; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*is using the `ReadOnly` qualifier.*:UserWarning")

USER = [{"role": "user", "content": "What is the capital of France?"}]


def chat(server: LocalLLMServer, messages: list | None = None, **kwargs):
    return litellm.completion(
        model="openai/test-model", api_base=server.openai_base, api_key="x", messages=messages or USER, **kwargs
    )


def post(server: LocalLLMServer, path: str, body: dict | bytes, headers: dict | None = None):
    """A plain HTTP POST; returns (status, headers, body bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


# Chat completions


def test_chat_completion_is_parsed_by_litellm_with_usage(llm_server):
    response = chat(llm_server)
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert "capital of France" in choice.message.content
    assert response.model == "test-model"
    assert response.id.startswith("chatcmpl-")
    usage = response.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_same_request_same_answer_and_different_prompt_different_answer(llm_server):
    first = chat(llm_server).choices[0].message.content
    again = chat(llm_server).choices[0].message.content
    other = chat(llm_server, [{"role": "user", "content": "What is the capital of Spain?"}]).choices[0].message.content
    assert first == again
    assert other != first


def test_n_choices_are_distinct(llm_server):
    response = chat(llm_server, n=3)
    texts = [c.message.content for c in response.choices]
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert len(set(texts)) == 3
    assert llm_server.last_request.body["n"] == 3


def test_streaming_assembles_to_the_non_streamed_answer_with_usage(llm_server):
    expected = chat(llm_server).choices[0].message.content
    chunks = list(chat(llm_server, stream=True, stream_options={"include_usage": True}))
    assert len(chunks) > 3
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    usage = [c.usage for c in chunks if getattr(c, "usage", None)]
    assert usage and usage[-1].completion_tokens > 0


def test_stream_ends_with_done_over_raw_http(llm_server):
    body = {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    status, headers, raw = post(llm_server, "/v1/chat/completions", body)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    events = [line[len("data: ") :] for line in raw.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in parsed)
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"]["total_tokens"] > 0
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"


def test_requests_record_headers_and_body_including_extra_headers_and_extra_body(llm_server):
    chat(llm_server, extra_headers={"Helicone-Session-Id": "s-1"}, extra_body={"custom_field": {"a": 1}})
    recorded = llm_server.last_request
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["helicone-session-id"] == "s-1"
    assert recorded.headers["HELICONE-SESSION-ID"] == "s-1"
    assert recorded.headers["authorization"] == "Bearer x"
    assert recorded.body["custom_field"] == {"a": 1}
    assert recorded.body["messages"] == USER
    assert "x" not in repr(recorded.headers).split("authorization")[1].split(",")[0]


def test_script_forces_completions_in_order_then_falls_back(llm_server):
    llm_server.script(["first forced", Reply(text="second forced")])
    assert chat(llm_server).choices[0].message.content == "first forced"
    assert chat(llm_server).choices[0].message.content == "second forced"
    assert "capital of France" in chat(llm_server).choices[0].message.content


def test_fixture_resets_between_tests_part_one(llm_server):
    chat(llm_server)
    llm_server.script(["left over"])
    llm_server.fail_next("500")
    llm_server.latency = 5.0
    assert len(llm_server.requests) == 1 and llm_server.pending_faults == 1


def test_fixture_resets_between_tests_part_two(llm_server):
    assert llm_server.requests == []
    assert llm_server.pending_faults == 0
    assert llm_server.latency == 0.0
    assert chat(llm_server).choices[0].message.content != "left over"


def test_concurrent_clients_get_their_own_answers(llm_server):
    expected = {}
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    for i in range(16):
        expected[i] = chat(llm_server, [{"role": "user", "content": f"question number {i}"}]).choices[0].message.content
    llm_server.clear()

    def worker(i: int) -> None:
        try:
            for _ in range(3):
                content = chat(llm_server, [{"role": "user", "content": f"question number {i}"}])
                results.setdefault(i, content.choices[0].message.content)
                assert content.choices[0].message.content == expected[i]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results.values())) == 16
    assert len(llm_server.requests) == 48


def test_keep_alive_serves_several_requests_on_one_connection(llm_server):
    connection = http.client.HTTPConnection("127.0.0.1", llm_server.port, timeout=10)
    answers = []
    for i in range(3):
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"k{i}"}]})
        connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        answers.append(json.loads(response.read())["choices"][0]["message"]["content"])
    connection.close()
    assert len(set(answers)) == 3


def test_context_manager_frees_the_port():
    with LocalLLMServer() as server:
        port = server.port
        assert chat(server).choices[0].message.content
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
