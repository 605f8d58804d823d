"""`LM` over real HTTP: the seed's calls, provider routing, kwargs, model types, outputs, retries and errors."""

from __future__ import annotations

import asyncio
import datetime
import io
import os
import re
import subprocess
import sys

import pytest

import turbodspy as dspy
from turbodspy.clients import provider
from turbodspy.testing import Reply

SECRET = "sk-test-SECRETKEY-1234567890"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(provider, "RETRY_BASE_SECONDS", 0.01)


def openai_lm(server, model="openai/gpt-4o-mini", **kwargs):
    return dspy.LM(model, api_base=server.openai_base, api_key=SECRET, **kwargs)


def test_seed_direct_calls_return_lists_of_strings(llm_server):
    lm = openai_lm(llm_server)
    by_prompt = lm("Say this is a test!", temperature=0.7)
    by_messages = lm(messages=[{"role": "user", "content": "Say this is a test!"}])
    assert isinstance(by_prompt, list) and len(by_prompt) == 1 and isinstance(by_prompt[0], str)
    assert by_prompt[0]
    assert isinstance(by_messages[0], str)
    bodies = [r.body for r in llm_server.model_requests]
    assert bodies[0]["messages"] == [{"role": "user", "content": "Say this is a test!"}]
    assert bodies[0]["temperature"] == 0.7
    assert bodies[0]["model"] == "gpt-4o-mini"


def test_model_without_provider_prefix_goes_to_the_gateway(llm_server):
    # The Helicone seed writes the bare model name with a gateway api_base.
    lm = dspy.LM("gpt-4o-mini", api_key=SECRET, api_base=llm_server.openai_base)
    assert lm("Hello, world!")[0]
    request = llm_server.model_requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("key", ["", None])
def test_local_servers_need_no_key(llm_server, key, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # The seed's SGLang snippet: an OpenAI-compatible local server and an empty key.
    lm = dspy.LM(
        "openai/meta-llama/Meta-Llama-3-8B-Instruct", api_base=llm_server.openai_base, api_key=key, model_type="chat"
    )
    assert lm("hi")[0]
    assert llm_server.model_requests[-1].body["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"


def test_ollama_chat_goes_through_the_ollama_wire_format(llm_server):
    lm = dspy.LM("ollama_chat/llama3.2", api_base=llm_server.url, api_key="")
    assert lm("Why is the sky blue?")[0]
    assert llm_server.model_requests[-1].path == "/api/chat"
    assert llm_server.model_requests[-1].body["model"] == "llama3.2"


def test_anthropic_goes_through_the_messages_api(llm_server):
    lm = dspy.LM("anthropic/claude-3-opus-20240229", api_key=SECRET, api_base=llm_server.url, max_tokens=100)
    assert lm("Say this is a test!")[0]
    request = llm_server.model_requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == SECRET
    assert request.body["max_tokens"] == 100


def test_extra_headers_and_extra_body_reach_the_server(llm_server):
    lm = openai_lm(
        llm_server,
        extra_headers={"Helicone-Session-Id": "dspy-example-session", "Helicone-User-Id": "user-123"},
        extra_body={"prompt_id": "customer-support-prompt-id", "inputs": {"customer_name": "Sarah"}},
    )
    lm("What is DSPy?")
    request = llm_server.model_requests[-1]
    assert request.headers["helicone-session-id"] == "dspy-example-session"
    assert request.headers["helicone-user-id"] == "user-123"
    assert request.body["prompt_id"] == "customer-support-prompt-id"
    assert request.body["inputs"] == {"customer_name": "Sarah"}


def test_call_kwargs_override_the_lm_kwargs(llm_server):
    lm = openai_lm(llm_server, temperature=0.9, max_tokens=2000, stop=["\n\n"])
    lm("a question", temperature=0.1)
    body = llm_server.model_requests[-1].body
    assert body["temperature"] == 0.1
    assert body["max_tokens"] == 2000
    assert body["stop"] == ["\n\n"]
    assert lm.kwargs["temperature"] == 0.9


def test_n_gives_one_output_per_choice(llm_server):
    lm = openai_lm(llm_server)
    outputs = lm("Name a color.", n=3, temperature=1.0)
    assert len(outputs) == 3
    assert llm_server.model_requests[-1].body["n"] == 3


def test_text_model_type_uses_the_completions_api(llm_server):
    lm = openai_lm(llm_server, model="openai/gpt-3.5-turbo-instruct", model_type="text")
    outputs = lm("Say this is a test!")
    assert isinstance(outputs[0], str) and outputs[0]
    request = llm_server.model_requests[-1]
    assert request.path == "/v1/completions"
    assert request.body["prompt"] == "Say this is a test!\n\nBEGIN RESPONSE:"


def test_responses_model_type_uses_the_responses_api(llm_server):
    lm = openai_lm(llm_server, model="openai/gpt-5-mini", model_type="responses", temperature=1.0, max_tokens=16000)
    outputs = lm("Say this is a test!")
    assert isinstance(outputs[0], dict) and outputs[0]["text"]
    request = llm_server.model_requests[-1]
    assert request.path == "/v1/responses"
    assert request.body["max_output_tokens"] == 16000


def test_reasoning_content_and_tool_calls_give_dict_outputs(llm_server):
    llm_server.script([Reply(text="The answer.", reasoning_content="Because.")])
    out = openai_lm(llm_server)("think first")
    assert out == [{"text": "The answer.", "reasoning_content": "Because."}]
    llm_server.script([Reply(text=None, tool_calls=[{"name": "search", "arguments": {"q": "dspy"}}])])
    (tool_out,) = openai_lm(llm_server)("use a tool")
    assert tool_out["tool_calls"][0]["function"]["name"] == "search"


def test_logprobs_give_dict_outputs(llm_server):
    (out,) = openai_lm(llm_server)("hello", logprobs=True)
    assert set(out) >= {"text", "logprobs"}
    assert llm_server.model_requests[-1].body["logprobs"] is True


def test_acall_matches_the_sync_call(llm_server):
    lm = openai_lm(llm_server, cache=False)
    sync = lm("Say this is a test!")
    asynchronous = asyncio.run(lm.acall("Say this is a test!"))
    assert asynchronous == sync
    assert len(llm_server.model_requests) == 2


def test_rollout_id_is_keyed_recorded_and_never_sent(llm_server):
    lm = openai_lm(llm_server)
    first = lm("Say this is a test!", rollout_id=1, temperature=1.0)
    again = lm("Say this is a test!", rollout_id=1, temperature=1.0)
    lm("Say this is a test!", rollout_id=2, temperature=1.0)
    assert first == again
    assert len(llm_server.model_requests) == 2  # rollout 1 was cached, rollout 2 is a new request
    assert all("rollout_id" not in r.body for r in llm_server.model_requests)
    assert lm.history[-1]["kwargs"]["rollout_id"] == 2


def test_a_rollout_id_of_none_set_on_the_lm_is_left_out_and_left_alone(llm_server):
    lm = openai_lm(llm_server, temperature=0.7)
    lm.kwargs["rollout_id"] = None
    before = dict(lm.kwargs)
    first = lm("no rollout")
    assert "rollout_id" not in llm_server.model_requests[-1].body
    assert lm.kwargs == before and lm.kwargs["rollout_id"] is None  # the LM's own, unchanged
    assert lm("no rollout") == first and len(llm_server.model_requests) == 1  # same key as without it


def test_rollout_id_with_zero_temperature_warns(llm_server):
    with pytest.warns(UserWarning, match="rollout_id has no effect when temperature=0"):
        openai_lm(llm_server)("hi", rollout_id=1, temperature=0)


@pytest.mark.parametrize("model", ["openai/o1", "openai/o3-mini", "openai/o4-mini", "openai/gpt-5", "gpt-5-mini"])
def test_reasoning_models_refuse_bad_temperature_and_max_tokens(model):
    with pytest.raises(dspy.LMConfigurationError, match=re.escape("temperature=1.0 or None and max_tokens >= 16000")):
        dspy.LM(model, temperature=0.7)
    with pytest.raises(dspy.LMConfigurationError, match="max_tokens >= 16000"):
        dspy.LM(model, max_tokens=1000)


def test_reasoning_models_send_max_completion_tokens(llm_server):
    lm = openai_lm(llm_server, model="openai/o3-mini", temperature=1.0, max_tokens=20000)
    lm("hi")
    body = llm_server.model_requests[-1].body
    assert body["max_completion_tokens"] == 20000
    assert "max_tokens" not in body
    assert dspy.LM("openai/gpt-5-chat-latest", temperature=0.2).kwargs["max_tokens"] is None


@pytest.mark.parametrize("model", ["", "openai/"])
def test_malformed_model_strings_are_refused(model):
    with pytest.raises(ValueError, match="model"):
        dspy.LM(model)


def test_rate_limits_are_retried_honouring_retry_after(llm_server):
    llm_server.fail_next("429", count=2, retry_after=0.05)
    lm = openai_lm(llm_server, num_retries=3)
    assert lm("retry me")[0]
    assert len(llm_server.model_requests) == 3


@pytest.mark.parametrize("fault", ["500", "503", "drop", "malformed"])
def test_transient_failures_are_retried(llm_server, fault):
    llm_server.fail_next(fault, count=1)
    lm = openai_lm(llm_server, num_retries=2)
    assert lm(f"survive {fault}")[0]


def test_exhausted_retries_raise_a_typed_error_with_what_is_known(llm_server):
    llm_server.fail_next("429", count=4, retry_after=0)
    lm = openai_lm(llm_server, num_retries=2)
    with pytest.raises(dspy.LMRateLimitError) as info:
        lm("never works")
    error = info.value
    assert error.status == 429
    assert error.model == "openai/gpt-4o-mini"
    assert error.provider == "openai"
    assert error.request_id == llm_server.model_requests[-1].request_id
    assert len(llm_server.model_requests) == 3
    assert SECRET not in str(error)


@pytest.mark.parametrize(
    "fault, error_class",
    [
        ("401", dspy.LMAuthError),
        ("400", dspy.ContextWindowExceededError),
        ("404", dspy.LMUnsupportedModelError),
    ],
)
def test_permanent_failures_are_not_retried(llm_server, fault, error_class):
    llm_server.fail_next(fault, count=1)
    with pytest.raises(error_class) as info:
        openai_lm(llm_server, num_retries=3)("fails once, permanently")
    assert isinstance(info.value, dspy.LMError)
    assert info.value.status == int(fault)
    assert len(llm_server.model_requests) == 1


def test_connection_refused_is_a_transport_error():
    lm = dspy.LM("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1", api_key=SECRET, num_retries=1)
    with pytest.raises(dspy.LMTransportError):
        lm("nobody listens")


def test_history_has_dspy_keys_and_never_the_api_key(llm_server):
    lm = openai_lm(llm_server)
    lm("Say this is a test!", api_key=SECRET)
    lm("Say this is a test!", api_key=SECRET)
    assert len(lm.history) == 2
    expected = {
        "prompt",
        "messages",
        "kwargs",
        "response",
        "outputs",
        "usage",
        "cost",
        "timestamp",
        "uuid",
        "model",
        "response_model",
        "model_type",
    }
    for entry in lm.history:
        assert set(entry) == expected
        assert SECRET not in repr(entry["kwargs"])
    fresh, cached = lm.history
    assert fresh["usage"]["total_tokens"] > 0
    assert cached["usage"] == {}
    assert cached["response"].cache_hit is True
    assert cached["outputs"] == fresh["outputs"]
    assert fresh["uuid"] != cached["uuid"]
    assert dspy.clients.history.GLOBAL_HISTORY[-1] is cached
    # Local time as `datetime.now().isoformat()` writes it, in call order.
    for entry in lm.history:
        stamp = datetime.datetime.fromisoformat(entry["timestamp"])
        assert stamp.isoformat() == entry["timestamp"]
        assert abs((datetime.datetime.now() - stamp).total_seconds()) < 60
    assert fresh["timestamp"] <= cached["timestamp"]


# Each call is checked against `datetime.now()` around it: across a second boundary (where the formatted date
# and time of day change) in each zone, right after `time.tzset()` switches zones, and in zones with half- and
# quarter-hour offsets and daylight saving.
_TIMESTAMP_CHECK = """
import datetime, os, time
import turbodspy.clients.history as h

def check():
    before = datetime.datetime.now(); stamp = h.timestamp(); after = datetime.datetime.now()
    parsed = datetime.datetime.fromisoformat(stamp)
    assert before <= parsed <= after, (before, stamp, after)
    assert parsed.isoformat() == stamp, stamp

offsets = []
for zone in ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York"]:
    os.environ["TZ"] = zone
    time.tzset()
    check()
    offsets.append(time.strftime("%z"))
    time.sleep(1 - time.time() % 1 - 0.003)  # to just before the next second
    deadline = time.time() + 0.006
    while time.time() < deadline:
        check()
print(" ".join(offsets[:3]))
"""


def test_history_timestamps_are_local_time_in_the_processes_time_zone():
    run = subprocess.run([sys.executable, "-c", _TIMESTAMP_CHECK], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "+0000 +0530 +0545"  # each zone was in effect


def test_history_timestamps_follow_a_patched_clock(monkeypatch):
    # Tools that freeze time in tests (freezegun, time-machine) patch `time`; history follows, as DSPy's does.
    from turbodspy.clients.history import timestamp

    frozen = datetime.datetime(2020, 1, 2, 3, 4, 5, 123456)
    monkeypatch.setattr("time.time_ns", lambda: int(frozen.timestamp()) * 10**9 + 123456789)
    assert timestamp() == frozen.isoformat()
    monkeypatch.setattr("time.time_ns", lambda: int(frozen.timestamp()) * 10**9)
    assert timestamp() == frozen.replace(microsecond=0).isoformat()  # no fraction at a whole second


def test_history_is_bounded_by_max_history_size(llm_server):
    lm = openai_lm(llm_server)
    with dspy.context(max_history_size=3):
        for i in range(5):
            lm(f"question {i}")
    assert len(lm.history) == 3
    assert [e["prompt"] for e in lm.history] == ["question 2", "question 3", "question 4"]
    assert [e["prompt"] for e in lm.history[-2:]] == ["question 3", "question 4"]


def test_inspect_history_prints_messages_and_answers_without_secrets(llm_server):
    lm = openai_lm(llm_server)
    answer = lm(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}])[0]
    out = io.StringIO()
    lm.inspect_history(1, file=out)
    text = out.getvalue()
    assert "System message:" in text and "Be brief." in text
    assert "User message:" in text and "Hi there" in text
    assert answer.strip() in text
    assert SECRET not in text
    global_out = io.StringIO()
    dspy.inspect_history(1, file=global_out)
    assert "Hi there" in global_out.getvalue()


def test_copy_and_state_keep_settings_but_never_the_key(llm_server):
    lm = openai_lm(llm_server, temperature=0.3)
    lm("hi")
    copy = lm.copy(rollout_id=5, temperature=1.0)
    assert copy.kwargs["rollout_id"] == 5 and copy.kwargs["temperature"] == 1.0
    assert lm.kwargs["temperature"] == 0.3 and "rollout_id" not in lm.kwargs
    assert len(copy.history) == 0 and len(lm.history) == 1
    state = lm.dump_state()
    assert "api_key" not in state and SECRET not in repr(state)
    loaded = dspy.BaseLM.load_state(state)
    assert isinstance(loaded, dspy.LM)
    assert loaded.model == lm.model and loaded.kwargs["temperature"] == 0.3


def test_import_does_not_load_litellm_or_other_heavy_modules():
    # Each loads when first needed: LiteLLM and its HTTP stack with the first provider call, asyncio with the
    # first async call, pydantic with the first signature, tqdm with the first progress bar.
    heavy = ("litellm", "openai", "httpx", "asyncio", "pydantic", "tqdm")
    code = f"import sys, turbodspy; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_azure_and_databricks_route_through_their_own_endpoints(llm_server):
    azure = dspy.LM("azure/my-deployment", api_base=llm_server.url, api_key=SECRET, api_version="2024-06-01")
    assert azure("hi")[0]
    assert llm_server.model_requests[-1].path == "/openai/deployments/my-deployment/chat/completions"
    assert llm_server.model_requests[-1].headers["api-key"] == SECRET
    databricks = dspy.LM(
        "databricks/databricks-meta-llama-3-1-70b-instruct",
        api_base=f"{llm_server.url}/serving-endpoints",
        api_key=SECRET,
    )
    assert databricks("hi")[0]
    assert llm_server.model_requests[-1].path == "/serving-endpoints/chat/completions"


def test_gemini_requests_use_the_gemini_wire_format(llm_server):
    lm = dspy.LM("gemini/gemini-2.5-pro-preview-03-25", api_base=llm_server.url, api_key=SECRET)
    assert "hi" in lm("hi")[0]
    assert llm_server.model_requests[-1].path == "/models/gemini-2.5-pro-preview-03-25:generateContent"
    # A model the provider does not serve comes back as a typed, non-retried error.
    llm_server.clear()
    llm_server.models = ("gemini-other",)
    with pytest.raises(dspy.LMUnsupportedModelError) as info:
        lm("hi again")
    assert info.value.status == 404 and info.value.provider == "gemini"
    assert len(llm_server.model_requests) == 1


def test_credential_headers_never_reach_history_or_saved_state(llm_server):
    headers = {"Helicone-Auth": f"Bearer {SECRET}", "Authorization": f"Bearer {SECRET}", "Helicone-User-Id": "u1"}
    lm = openai_lm(llm_server, extra_headers=headers)
    lm("hi", extra_headers=headers)
    assert llm_server.model_requests[-1].headers["helicone-auth"] == f"Bearer {SECRET}"  # sent, as asked
    assert SECRET not in repr(lm.history[-1]["kwargs"])
    assert lm.history[-1]["kwargs"]["extra_headers"] == {"Helicone-User-Id": "u1"}
    state = lm.dump_state()
    assert SECRET not in repr(state)
    assert state["extra_headers"] == {"Helicone-User-Id": "u1"}
    out = io.StringIO()
    lm.inspect_history(1, file=out)
    assert SECRET not in out.getvalue()


def test_track_usage_counts_fresh_calls_only(llm_server):
    lm = openai_lm(llm_server)
    with dspy.track_usage() as tracker:
        lm("count me")
        lm("count me")  # a cache hit: nothing billed
    totals = tracker.get_total_tokens()[lm.model]
    assert totals["total_tokens"] == lm.history[0]["usage"]["total_tokens"] > 0


def test_a_key_the_provider_echoes_never_reaches_the_error(llm_server):
    llm_server.fail_next("401", message=f"Incorrect API key provided: {SECRET}. Check your key.")
    with pytest.raises(dspy.LMAuthError) as info:
        openai_lm(llm_server)("hi")
    error = info.value
    assert SECRET not in str(error) and "Incorrect API key provided" in str(error)
    assert error.__cause__ is None and error.__suppress_context__  # LiteLLM's own text is not chained in


def test_backoff_waits_at_least_what_retry_after_asks():
    assert provider.backoff_seconds(0, 5.0) >= 5.0
    assert provider.backoff_seconds(0, None) <= provider.RETRY_BASE_SECONDS
    assert provider.backoff_seconds(30, None) <= provider.RETRY_MAX_SECONDS


def test_saved_lm_state_loads_in_dspy_and_back(llm_server):
    import dspy as real_dspy

    state = openai_lm(llm_server, temperature=0.3).dump_state()
    theirs = real_dspy.BaseLM.load_state(state)
    assert type(theirs) is real_dspy.LM and theirs.kwargs["temperature"] == 0.3
    ours = dspy.BaseLM.load_state(theirs.dump_state())
    assert type(ours) is dspy.LM and ours.model == "openai/gpt-4o-mini"


def test_history_reads_like_a_list(llm_server):
    lm = openai_lm(llm_server)
    for i in range(3):
        lm(f"q{i}")
    combined = lm.history + [{"prompt": "extra"}]  # noqa: RUF005 - the list operator DSPy users write
    assert isinstance(combined, list) and [e["prompt"] for e in combined] == ["q0", "q1", "q2", "extra"]
    assert lm.history.pop(0)["prompt"] == "q0"
    assert lm.history.pop()["prompt"] == "q2"
    assert len(lm.history) == 1


def test_text_that_is_not_valid_unicode_gets_a_clear_error(llm_server):
    with pytest.raises(ValueError, match="lone surrogate"):
        openai_lm(llm_server)("broken \ud800 text")
    assert llm_server.model_requests == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_history_ids_of_a_forked_child_never_repeat_its_parents():
    from turbodspy import _core

    before = [_core.call_id() for _ in range(100)]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids go back through the pipe
        os.write(write_end, "\n".join(_core.call_id() for _ in range(500)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {_core.call_id() for _ in range(500)}  # the parent goes on from the same counter
    assert len(child) == 500 and len(parent) == 500
    assert not child & parent and not child & set(before)
