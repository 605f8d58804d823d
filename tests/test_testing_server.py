"""The local LLM server of `turbodspy.testing`, driven through LiteLLM's real provider code over real HTTP."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import enum
import http.client
import json
import threading
import urllib.error
import urllib.request

import litellm
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

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
    assert "Bearer x" not in repr(recorded.headers)


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


def test_models_are_listed_and_unknown_paths_are_404(llm_server):
    status, _, raw = post(llm_server, "/v1/nothing-here", {})
    assert status == 404 and "Unknown request URL" in json.loads(raw)["error"]["message"]
    with urllib.request.urlopen(llm_server.openai_base + "/models", timeout=10) as response:
        listing = json.loads(response.read())
    assert listing["object"] == "list" and listing["data"][0]["id"] == "test-model"


@pytest.mark.parametrize(
    ("api_base_suffix", "expected_path"), [("/", "/chat/completions"), ("/v1", "/v1/chat/completions")]
)
def test_gateway_style_api_base_with_unprefixed_model(llm_server, api_base_suffix, expected_path):
    response = litellm.completion(
        model="gpt-4o-mini", api_base=llm_server.url + api_base_suffix, api_key="x", messages=USER
    )
    assert "capital of France" in response.choices[0].message.content
    assert llm_server.last_request.path == expected_path
    assert llm_server.last_request.model == "gpt-4o-mini"


# Other OpenAI endpoints


def test_legacy_text_completion(llm_server):
    response = litellm.text_completion(
        model="text-completion-openai/test-instruct", api_base=llm_server.openai_base, api_key="x", prompt="Say hi"
    )
    assert llm_server.last_request.path == "/v1/completions"
    assert llm_server.last_request.body["prompt"] in ("Say hi", ["Say hi"])
    assert "Say hi" in response.choices[0].text
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_responses_api_through_the_openai_client(llm_server):
    import openai

    client = openai.OpenAI(base_url=llm_server.openai_base, api_key="x", max_retries=0)
    response = client.responses.create(model="test-model", input="Say hi to the Responses API", instructions="Be kind")
    assert llm_server.last_request.path == "/v1/responses"
    assert response.status == "completed"
    assert "Say hi to the Responses API" in response.output_text
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    streamed = client.responses.create(
        model="test-model", input="Say hi to the Responses API", instructions="Be kind", stream=True
    )
    events = list(streamed)
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == response.output_text


def test_responses_api_through_litellm(llm_server):
    # litellm.responses imports the `mcp` package (a dev dependency) on every call.
    response = litellm.responses(
        model="openai/test-model", api_base=llm_server.openai_base, api_key="x", input="Say hi to the Responses API"
    )
    assert llm_server.last_request.path == "/v1/responses"
    assert "Say hi to the Responses API" in response.output[0].content[0].text
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    llm_server.script([Reply(reasoning_content="Greeting first.")])
    reasoned = litellm.responses(
        model="openai/test-model", api_base=llm_server.openai_base, api_key="x", input="Say hi to the Responses API"
    )
    kinds = [item.type for item in reasoned.output]
    assert kinds == ["reasoning", "message"]
    assert reasoned.output[0].summary[0].text == "Greeting first."
    streamed = litellm.responses(
        model="openai/test-model",
        api_base=llm_server.openai_base,
        api_key="x",
        input="Say hi to the Responses API",
        stream=True,
    )
    deltas = [event.delta for event in streamed if event.type == "response.output_text.delta"]
    assert "".join(deltas) == response.output[0].content[0].text


# Anthropic and Ollama wire formats through LiteLLM's own provider code

SYSTEM_AND_USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


def test_anthropic_messages(llm_server):
    response = litellm.completion(
        model="anthropic/claude-3-opus-20240229", api_base=llm_server.url, api_key="k", messages=SYSTEM_AND_USER
    )
    recorded = llm_server.last_request
    assert recorded.path == "/v1/messages"
    assert recorded.headers["x-api-key"] == "k"
    assert [block["text"] for block in recorded.body["system"]] == ["Be brief."]
    assert recorded.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}]
    assert "Name a colour." in response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    streamed = litellm.completion(
        model="anthropic/claude-3-opus-20240229",
        api_base=llm_server.url,
        api_key="k",
        messages=SYSTEM_AND_USER,
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == response.choices[0].message.content


def test_anthropic_thinking_blocks_become_reasoning_content(llm_server):
    response = litellm.completion(
        model="anthropic/claude-sonnet-4-20250514",
        api_base=llm_server.url,
        api_key="k",
        messages=SYSTEM_AND_USER,
        thinking={"type": "enabled", "budget_tokens": 1024},
        max_tokens=2000,
    )
    message = response.choices[0].message
    assert "Name a colour." in message.reasoning_content
    assert message.thinking_blocks[0]["type"] == "thinking"
    assert "Name a colour." in message.content


def test_ollama_chat(llm_server):
    response = litellm.completion(model="ollama_chat/llama3.2", api_base=llm_server.url, messages=SYSTEM_AND_USER)
    chat_requests = [r for r in llm_server.requests if r.path == "/api/chat"]
    assert len(chat_requests) == 1 and chat_requests[0].body["model"] == "llama3.2"
    assert "Name a colour." in response.choices[0].message.content
    assert response.usage.prompt_tokens > 0
    streamed = litellm.completion(
        model="ollama_chat/llama3.2", api_base=llm_server.url, messages=SYSTEM_AND_USER, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == response.choices[0].message.content
    with urllib.request.urlopen(llm_server.url + "/api/tags", timeout=10) as tags:
        assert json.loads(tags.read())["models"][0]["name"] == "llama3.2:latest"


def test_gemini_generate_content(llm_server):
    def gemini(**kwargs):
        return litellm.completion(
            model="gemini/gemini-1.5-flash", api_base=llm_server.url, api_key="g", messages=SYSTEM_AND_USER, **kwargs
        )

    response = gemini()
    # LiteLLM may send background requests of its own; the one completion request is what this test is about.
    (recorded,) = [r for r in llm_server.requests if "generateContent" in r.path]
    assert recorded.path == "/models/gemini-1.5-flash:generateContent"
    assert recorded.headers["x-goog-api-key"] == "g"
    assert "Name a colour." in response.choices[0].message.content
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    streamed = "".join(c.choices[0].delta.content or "" for c in gemini(stream=True))
    assert streamed == response.choices[0].message.content
    assert llm_server.last_request.path.endswith(":streamGenerateContent")
    assert isinstance(json.loads(gemini(response_format={"type": "json_object"}).choices[0].message.content), dict)
    llm_server.fail_next("429")
    with pytest.raises(litellm.RateLimitError):
        gemini(num_retries=0)


def test_azure_and_databricks_routes(llm_server):
    azure = litellm.completion(
        model="azure/my-deployment", api_base=llm_server.url, api_key="az", api_version="2024-06-01", messages=USER
    )
    assert llm_server.last_request.path == "/openai/deployments/my-deployment/chat/completions"
    assert llm_server.last_request.query == "api-version=2024-06-01"
    assert llm_server.last_request.headers["api-key"] == "az"
    assert "capital of France" in azure.choices[0].message.content
    databricks = litellm.completion(
        model="databricks/dbrx", api_base=llm_server.url + "/serving-endpoints", api_key="db", messages=USER
    )
    assert llm_server.last_request.path == "/serving-endpoints/chat/completions"
    assert databricks.choices[0].message.content == azure.choices[0].message.content


def test_same_conversation_gets_the_same_answer_from_every_wire_format(llm_server):
    openai_text = chat(llm_server, SYSTEM_AND_USER).choices[0].message.content
    anthropic_text = (
        litellm.completion(
            model="anthropic/claude-3-opus-20240229", api_base=llm_server.url, api_key="k", messages=SYSTEM_AND_USER
        )
        .choices[0]
        .message.content
    )
    ollama_text = (
        litellm.completion(model="ollama_chat/llama3.2", api_base=llm_server.url, messages=SYSTEM_AND_USER)
        .choices[0]
        .message.content
    )
    assert openai_text == anthropic_text == ollama_text


# DSPy-shaped prompts


def dspy_messages(adapter, signature, inputs):
    return adapter.format(signature, demos=[], inputs=inputs)


def test_chat_adapter_prompt_gets_parseable_typed_fields(llm_server):
    dspy = pytest.importorskip("dspy")
    signature = dspy.Signature("question -> answer: int")
    messages = dspy_messages(dspy.ChatAdapter(), signature, {"question": "How many moons has Mars?"})
    text = chat(llm_server, messages).choices[0].message.content
    assert text.rstrip().endswith("[[ ## completed ## ]]")
    parsed = dspy.ChatAdapter().parse(signature, text)
    assert set(parsed) == {"answer"}
    assert isinstance(parsed["answer"], int)


def test_chain_of_thought_prompt_gets_every_field_in_order_with_its_type(llm_server):
    dspy = pytest.importorskip("dspy")
    signature = dspy.ChainOfThought(
        "question, context: list[str] -> answer: float, ok: bool, tags: list[str], meta: dict[str, int]"
    ).predict.signature
    messages = dspy_messages(dspy.ChatAdapter(), signature, {"question": "Is it so?", "context": ["a fact"]})
    text = chat(llm_server, messages).choices[0].message.content
    assert [line for line in text.splitlines() if line.startswith("[[ ##")] == [
        "[[ ## reasoning ## ]]",
        "[[ ## answer ## ]]",
        "[[ ## ok ## ]]",
        "[[ ## tags ## ]]",
        "[[ ## meta ## ]]",
        "[[ ## completed ## ]]",
    ]
    parsed = dspy.ChatAdapter().parse(signature, text)
    assert isinstance(parsed["reasoning"], str) and parsed["reasoning"]
    assert isinstance(parsed["answer"], float)
    assert isinstance(parsed["ok"], bool)
    assert isinstance(parsed["tags"], list) and all(isinstance(t, str) for t in parsed["tags"])
    assert isinstance(parsed["meta"], dict) and all(isinstance(v, int) for v in parsed["meta"].values())


def test_literal_and_pydantic_output_fields(llm_server):
    dspy = pytest.importorskip("dspy")
    from typing import Literal

    import pydantic

    class Item(pydantic.BaseModel):
        name: str
        qty: int

    class Mood(enum.Enum):
        HAPPY = "happy"
        SAD = "sad"

    Classify = dspy.Signature(
        {
            "text": (str, dspy.InputField()),
            "label": (Literal["pos", "neg"], dspy.OutputField()),
            "item": (Item, dspy.OutputField()),
            "mood": (Mood, dspy.OutputField()),
        },
        "Classify the text.",
    )

    for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
        messages = dspy_messages(adapter, Classify, {"text": "lovely"})
        parsed = adapter.parse(Classify, chat(llm_server, messages).choices[0].message.content)
        assert parsed["label"] in ("pos", "neg")
        assert isinstance(parsed["item"], Item) and isinstance(parsed["item"].qty, int)
        assert isinstance(parsed["mood"], Mood)


def test_json_adapter_prompt_gets_a_json_object_with_its_keys(llm_server):
    dspy = pytest.importorskip("dspy")
    signature = dspy.ChainOfThought("question -> answer: int").predict.signature
    messages = dspy_messages(dspy.JSONAdapter(), signature, {"question": "How many?"})
    text = chat(llm_server, messages).choices[0].message.content
    payload = json.loads(text)
    assert list(payload) == ["reasoning", "answer"]
    assert isinstance(payload["answer"], int)
    assert dspy.JSONAdapter().parse(signature, text)["answer"] == payload["answer"]


def test_response_format_json_schema_is_honoured(llm_server):
    import pydantic

    class Weather(pydantic.BaseModel):
        city: str
        degrees: float
        sunny: bool

    response = chat(llm_server, response_format=Weather)
    assert llm_server.last_request.body["response_format"]["type"] == "json_schema"
    weather = Weather.model_validate_json(response.choices[0].message.content)
    assert isinstance(weather.degrees, float)
    plain_json = chat(llm_server, response_format={"type": "json_object"}).choices[0].message.content
    assert isinstance(json.loads(plain_json), dict)


def test_scripted_unparseable_completion_fails_dspy_parsing(llm_server):
    dspy = pytest.importorskip("dspy")
    signature = dspy.Signature("question -> answer: int")
    llm_server.script(["I refuse to use the format."])
    messages = dspy_messages(dspy.ChatAdapter(), signature, {"question": "How many?"})
    text = chat(llm_server, messages).choices[0].message.content
    assert text == "I refuse to use the format."
    with pytest.raises(dspy.utils.exceptions.AdapterParseError):
        dspy.ChatAdapter().parse(signature, text)


# Extras: reasoning, tool calls, logprobs, limits


def test_script_function_sees_the_request_and_choice(llm_server):
    llm_server.script(lambda request, choice: f"{request.body['messages'][-1]['content']} / choice {choice}")
    response = chat(llm_server, n=2)
    assert [c.message.content for c in response.choices] == [
        "What is the capital of France? / choice 0",
        "What is the capital of France? / choice 1",
    ]


def test_reply_with_reasoning_content_and_tool_calls(llm_server):
    llm_server.script(
        [
            Reply(reasoning_content="Paris is the capital."),
            Reply(tool_calls=[{"name": "lookup", "arguments": {"city": "Paris"}}]),
        ]
    )
    first = chat(llm_server).choices[0].message
    assert first.reasoning_content == "Paris is the capital."
    assert "capital of France" in first.content
    second = chat(llm_server).choices[0]
    assert second.finish_reason == "tool_calls"
    assert second.message.content is None
    call = second.message.tool_calls[0]
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"city": "Paris"}


def test_forced_tool_choice_gets_arguments_matching_the_schema(llm_server):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
    }
    # Without `_skip_mcp_handler`, LiteLLM imports its optional `mcp` package whenever `tools` are given.
    response = chat(
        llm_server,
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        _skip_mcp_handler=True,
    )
    call = response.choices[0].message.tool_calls[0]
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "get_weather"
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)


def test_logprobs_when_asked(llm_server):
    response = chat(llm_server, logprobs=True, top_logprobs=2)
    content = response.choices[0].logprobs.content
    assert "".join(t.token for t in content) == response.choices[0].message.content
    assert all(t.logprob < 0 and len(t.top_logprobs) == 2 for t in content)
    _, _, raw = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert json.loads(raw)["choices"][0]["logprobs"] is None


def test_max_tokens_truncates_with_finish_reason_length_and_stop_cuts(llm_server):
    full = chat(llm_server).choices[0].message.content
    short = chat(llm_server, max_tokens=3).choices[0]
    assert short.finish_reason == "length"
    assert full.startswith(short.message.content) and len(short.message.content) < len(full)
    stopped = chat(llm_server, stop=["capital"]).choices[0]
    assert stopped.finish_reason == "stop"
    assert stopped.message.content == full[: full.index("capital")]


# Faults, latency and auth


def test_rate_limit_fault_carries_retry_after(llm_server):
    llm_server.fail_next("429", retry_after=3)
    status, headers, raw = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert status == 429
    assert headers["Retry-After"] == "3" and headers["retry-after-ms"] == "3000"
    assert json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    assert headers["x-request-id"] == llm_server.last_request.request_id
    llm_server.fail_next("429")
    with pytest.raises(litellm.RateLimitError) as caught:
        chat(llm_server, num_retries=0, max_retries=0)
    assert caught.value.status_code == 429
    assert chat(llm_server).choices[0].message.content


def test_faults_fire_count_times_then_requests_succeed(llm_server):
    llm_server.fail_next("500", count=2)
    assert llm_server.pending_faults == 2
    for _ in range(2):
        status, _, raw = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})
        assert status == 500 and json.loads(raw)["error"]["type"] == "server_error"
    status, _, _ = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert status == 200 and llm_server.pending_faults == 0


def test_litellm_retries_through_a_server_error(llm_server):
    llm_server.fail_next("500")
    response = chat(llm_server, num_retries=1)
    assert "capital of France" in response.choices[0].message.content
    assert len([r for r in llm_server.requests if r.path == "/v1/chat/completions"]) == 2


def test_dropped_connection_and_malformed_body(llm_server):
    llm_server.fail_next("drop")
    connection = http.client.HTTPConnection("127.0.0.1", llm_server.port, timeout=10)
    connection.request("POST", "/v1/chat/completions", json.dumps({"model": "m", "messages": USER}))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.getresponse()
    connection.close()
    llm_server.fail_next("malformed")
    status, _, raw = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    llm_server.fail_next("drop")
    with pytest.raises(litellm.InternalServerError, match="Connection error"):
        chat(llm_server, num_retries=0, max_retries=0)


def test_truncated_answers_and_streams(llm_server):
    llm_server.fail_next("truncated")
    connection = http.client.HTTPConnection("127.0.0.1", llm_server.port, timeout=10)
    connection.request("POST", "/v1/chat/completions", json.dumps({"model": "m", "messages": USER}))
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    connection.close()
    llm_server.fail_next("truncated")
    connection = http.client.HTTPConnection("127.0.0.1", llm_server.port, timeout=10)
    connection.request("POST", "/v1/chat/completions", json.dumps({"model": "m", "messages": USER, "stream": True}))
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert b"data: " in cut.value.partial and b"[DONE]" not in cut.value.partial
    connection.close()
    llm_server.fail_next("truncated")
    chunks = []
    # LiteLLM reports a stream cut off half-way as a MidStreamFallbackError (a ServiceUnavailableError); its
    # message names the cause in LiteLLM's own words, which change between its versions.
    with pytest.raises(litellm.exceptions.MidStreamFallbackError):
        for chunk in chat(llm_server, stream=True, num_retries=0, max_retries=0):
            chunks.append(chunk.choices[0].delta.content or "")
    full = chat(llm_server).choices[0].message.content
    assert chunks and full.startswith("".join(chunks)) and "".join(chunks) != full


def test_context_length_error_has_openai_shape(llm_server):
    llm_server.fail_next("400")
    status, _, raw = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})
    error = json.loads(raw)["error"]
    assert status == 400
    assert error["type"] == "invalid_request_error" and error["code"] == "context_length_exceeded"
    assert "maximum context length" in error["message"]
    llm_server.context_window = 5
    with pytest.raises(litellm.ContextWindowExceededError):
        chat(llm_server, num_retries=0, max_retries=0)
    with pytest.raises(litellm.ContextWindowExceededError):
        litellm.completion(
            model="anthropic/claude-3-opus-20240229", api_base=llm_server.url, api_key="k", messages=USER
        )


def test_expected_api_key_and_unknown_models():
    with LocalLLMServer(api_key="sk-right", models=["test-model"]) as server:
        with pytest.raises(litellm.AuthenticationError):
            litellm.completion(
                model="openai/test-model", api_base=server.openai_base, api_key="sk-wrong", messages=USER
            )
        with pytest.raises(litellm.AuthenticationError):
            litellm.completion(
                model="anthropic/claude-3-opus-20240229", api_base=server.url, api_key="sk-wrong", messages=USER
            )
        ok = litellm.completion(
            model="openai/test-model", api_base=server.openai_base, api_key="sk-right", messages=USER
        )
        assert "capital of France" in ok.choices[0].message.content
        with pytest.raises(litellm.NotFoundError):
            litellm.completion(
                model="openai/other-model", api_base=server.openai_base, api_key="sk-right", messages=USER
            )
        server.fail_next("401")
        with pytest.raises(litellm.AuthenticationError):
            litellm.completion(
                model="openai/test-model", api_base=server.openai_base, api_key="sk-right", messages=USER
            )


def test_latency_makes_a_short_client_timeout_expire(llm_server):
    llm_server.latency = 2.0
    with pytest.raises(litellm.Timeout):
        chat(llm_server, timeout=0.2, num_retries=0, max_retries=0)


def test_bad_input_is_a_clear_error(llm_server):
    with pytest.raises(ValueError, match="unknown fault kind 'teapot'"):
        llm_server.fail_next("teapot")
    with pytest.raises(TypeError, match="wrap a single answer in a list"):
        llm_server.script("just one")
    status, _, raw = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": "not a list"})
    assert status == 400 and "'messages' must be a non-empty list" in json.loads(raw)["error"]["message"]
    status, _, raw = post(llm_server, "/v1/chat/completions", b"{not json")
    assert status == 400


def test_xml_adapter_prompt_gets_tagged_fields(llm_server):
    dspy = pytest.importorskip("dspy")
    signature = dspy.ChainOfThought("question -> answer: int, notes: list[str]").predict.signature
    messages = dspy_messages(dspy.XMLAdapter(), signature, {"question": "Count the <b>bold</b> words"})
    text = chat(llm_server, messages).choices[0].message.content
    assert text.startswith("<reasoning>") and text.rstrip().endswith("</notes>")
    parsed = dspy.XMLAdapter().parse(signature, text)
    assert isinstance(parsed["answer"], int)
    assert len(parsed["notes"]) == 2 and all(isinstance(n, str) for n in parsed["notes"])


def test_dspy_programs_run_against_the_server(llm_server):
    dspy = pytest.importorskip("dspy")
    lm = dspy.LM("openai/test-model", api_base=llm_server.openai_base, api_key="local", cache=False)
    with dspy.context(lm=lm):
        prediction = dspy.ChainOfThought("question -> answer: int")(question="How many legs has a spider?")
        assert isinstance(prediction.answer, int) and prediction.reasoning
        with dspy.context(adapter=dspy.JSONAdapter()):
            typed = dspy.Predict("question -> answer: float, sure: bool")(question="Pi?")
        assert isinstance(typed.answer, float) and isinstance(typed.sure, bool)
    assert len(llm_server.model_requests) == 2


@pytest.mark.parametrize(("model_type", "path"), [("text", "/v1/completions"), ("responses", "/v1/responses")])
def test_dspy_programs_run_on_text_and_responses_models(llm_server, model_type, path):
    dspy = pytest.importorskip("dspy")
    lm = dspy.LM(
        "openai/test-model", api_base=llm_server.openai_base, api_key="local", model_type=model_type, cache=False
    )
    with dspy.context(lm=lm):
        prediction = dspy.ChainOfThought("question -> answer: int, ok: bool")(question="How many legs has a spider?")
    assert isinstance(prediction.answer, int) and isinstance(prediction.ok, bool)
    assert "How many legs has a spider?" in prediction.reasoning
    assert [r.path for r in llm_server.model_requests] == [path]


def test_async_clients_share_the_server(llm_server):
    import asyncio

    async def ask(i: int) -> str:
        response = await litellm.acompletion(
            model="openai/test-model",
            api_base=llm_server.openai_base,
            api_key="x",
            messages=[{"role": "user", "content": f"async question {i}"}],
        )
        return response.choices[0].message.content

    async def main() -> list[str]:
        return await asyncio.gather(*(ask(i) for i in range(16)))

    # In its own thread: LiteLLM's sync calls leave an unclosed event loop on the main thread, which
    # asyncio.run() there would replace and so garbage-collect with a ResourceWarning.
    results: list[list[str]] = []
    runner = threading.Thread(target=lambda: results.append(asyncio.run(main())))
    runner.start()
    runner.join()
    answers = results[0]
    assert all(f"async question {i}" in answer for i, answer in enumerate(answers))
    assert len(set(answers)) == 16


def test_embeddings_are_deterministic_unit_vectors(llm_server):
    first = litellm.embedding(
        model="openai/text-embedding-3-small", api_base=llm_server.openai_base, api_key="x", input=["a", "b", "a"]
    )
    vectors = [d["embedding"] for d in first.data]
    assert vectors[0] == vectors[2] != vectors[1]
    assert all(abs(sum(v * v for v in vector) - 1) < 1e-3 for vector in vectors)
    ollama = litellm.embedding(model="ollama/nomic-embed-text", api_base=llm_server.url, input=["a"])
    assert ollama.data[0]["embedding"] == vectors[0]
    assert [r.path for r in llm_server.model_requests] == ["/v1/embeddings", "/api/embed"]


def test_a_request_still_waiting_at_reset_takes_no_later_fault(llm_server):
    llm_server.latency = 2.0
    statuses = []
    late = threading.Thread(
        target=lambda: statuses.append(post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})[0])
    )
    late.start()
    while not llm_server.requests:
        threading.Event().wait(0.01)
    llm_server.reset()
    llm_server.fail_next("500")
    llm_server.script(["for the next test"])
    late.join()
    assert statuses == [200]
    assert llm_server.pending_faults == 1
    status, _, _ = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert status == 500
    _, _, raw = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert json.loads(raw)["choices"][0]["message"]["content"] == "for the next test"


def test_streamed_n_choices_match_the_non_streamed_ones(llm_server):
    expected = [c.message.content for c in chat(llm_server, n=3).choices]
    pieces: dict[int, str] = {}
    for chunk in chat(llm_server, n=3, stream=True):
        for choice in chunk.choices:
            pieces[choice.index] = pieces.get(choice.index, "") + (choice.delta.content or "")
    assert [pieces[i] for i in range(3)] == expected


def test_anthropic_tool_use_and_stop_sequences(llm_server):
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"term": {"type": "string"}}, "required": ["term"]},
        },
    }
    response = litellm.completion(
        model="anthropic/claude-3-opus-20240229",
        api_base=llm_server.url,
        api_key="k",
        messages=USER,
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        _skip_mcp_handler=True,
    )
    assert llm_server.last_request.body["tool_choice"] == {"type": "tool", "name": "lookup"}
    call = response.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and isinstance(json.loads(call.function.arguments)["term"], str)
    full = litellm.completion(
        model="anthropic/claude-3-opus-20240229", api_base=llm_server.url, api_key="k", messages=USER
    ).choices[0]
    stopped = litellm.completion(
        model="anthropic/claude-3-opus-20240229", api_base=llm_server.url, api_key="k", messages=USER, stop=["capital"]
    ).choices[0]
    assert stopped.message.content == full.message.content[: full.message.content.index("capital")]
    assert stopped.finish_reason == "stop"


def test_ollama_json_format(llm_server):
    response = litellm.completion(
        model="ollama_chat/llama3.2", api_base=llm_server.url, messages=USER, response_format={"type": "json_object"}
    )
    assert llm_server.model_requests[-1].body["format"] == "json"
    assert isinstance(json.loads(response.choices[0].message.content), dict)


def test_a_failing_script_function_is_a_500_saying_why(llm_server):
    def broken(request):
        raise KeyError("no such thing")

    llm_server.script(broken)
    status, _, raw = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert status == 500
    assert "KeyError" in json.loads(raw)["error"]["message"]
    llm_server.script(lambda request: None)
    status, _, raw = post(llm_server, "/v1/chat/completions", {"model": "m", "messages": USER, "top_logprobs": "x"})
    assert status == 400 and "'top_logprobs' must be a non-negative integer" in json.loads(raw)["error"]["message"]


def test_reply_rejects_malformed_tool_calls():
    with pytest.raises(ValueError, match="each tool call must be"):
        Reply(tool_calls=[{"arguments": {}}])


# Properties of the answer generator

FIELD_TYPES = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list[str]": list[str],
    "list[int]": list[int],
    "dict[str, int]": dict[str, int],
    "int | None": int | None,
}


@settings(max_examples=60, deadline=None)
@given(
    outputs=st.lists(
        st.tuples(st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True), st.sampled_from(sorted(FIELD_TYPES))),
        min_size=1,
        max_size=5,
        unique_by=lambda pair: pair[0],
    ),
    question=st.text(min_size=1, max_size=80),
    adapter_name=st.sampled_from(["ChatAdapter", "JSONAdapter", "XMLAdapter"]),
)
def test_answers_to_any_dspy_signature_parse_into_their_types(outputs, question, adapter_name):
    dspy = pytest.importorskip("dspy")
    from turbodspy.testing.answers import compose

    names = [name for name, _ in outputs]
    assume("question" not in names)
    fields = {"question": (str, dspy.InputField())}
    fields.update({name: (FIELD_TYPES[kind], dspy.OutputField()) for name, kind in outputs})
    signature = dspy.Signature(fields, "Answer the question.")
    adapter = getattr(dspy, adapter_name)()
    messages = adapter.format(signature, demos=[], inputs={"question": question})
    text = compose([(m["role"], m["content"]) for m in messages])
    parsed = adapter.parse(signature, text)
    assert list(parsed) == names
    for name, kind in outputs:
        expected = FIELD_TYPES[kind]
        origin = getattr(expected, "__origin__", None)
        if kind == "int | None":
            assert isinstance(parsed[name], int)
        elif origin is not None:
            assert isinstance(parsed[name], origin)
        else:
            assert isinstance(parsed[name], expected) and type(parsed[name]) is expected


@settings(max_examples=200, deadline=None)
@given(
    conversation=st.lists(
        st.tuples(st.sampled_from(["system", "user", "assistant"]), st.text(max_size=300)), min_size=1, max_size=4
    ),
    choice=st.integers(min_value=0, max_value=5),
)
def test_compose_answers_any_conversation_deterministically(conversation, choice):
    from turbodspy.testing.answers import compose

    first = compose(conversation, choice=choice)
    assert isinstance(first, str) and first
    assert compose(conversation, choice=choice) == first


def test_importing_the_testing_module_loads_neither_litellm_nor_dspy():
    import subprocess
    import sys

    code = "import sys, turbodspy.testing; print(sorted({'litellm', 'dspy', 'httpx'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_streams_and_plain_answers_interleave_on_shared_keep_alive_connections(llm_server):
    import httpx

    def expected(i: int) -> str:
        body = {"model": "m", "messages": [{"role": "user", "content": f"mixed {i}"}]}
        return httpx.post(llm_server.openai_base + "/chat/completions", json=body).json()["choices"][0]["message"][
            "content"
        ]

    wanted = {i: expected(i) for i in range(24)}
    errors: list[BaseException] = []

    # One client per thread: each keeps its connection alive across rounds, so streamed and plain answers
    # alternate on it. (One client shared by 24 threads exercised httpx's pool, which now and then raised EBADF
    # under load on its own side, not this server's.)
    def worker(i: int) -> None:
        try:
            with httpx.Client(base_url=llm_server.openai_base) as client:
                for round_ in range(4):
                    body = {"model": "m", "messages": [{"role": "user", "content": f"mixed {i}"}]}
                    if (i + round_) % 2:
                        body["stream"] = True
                        with client.stream("POST", "/chat/completions", json=body) as response:
                            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
                        assert lines[-1] == "data: [DONE]"
                        chunks = [json.loads(line[6:]) for line in lines[:-1]]
                        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
                    else:
                        text = client.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
                    assert text == wanted[i]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(llm_server.model_requests) == 24 + 24 * 4
