"""The response cache: hits, DSPy-equal keys, the byte bound, single flight, and `cache=False`."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings

import pydantic
import pytest

import turbodspy as dspy

SECRET = "sk-test-SECRETKEY-1234567890"


def openai_lm(server, **kwargs):
    return dspy.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key=SECRET, **kwargs)


def test_a_repeated_call_is_served_from_the_cache(llm_server):
    lm = openai_lm(llm_server, temperature=0.7)
    first = lm("Say this is a test!")
    second = lm("Say this is a test!")
    assert second == first
    assert len(llm_server.model_requests) == 1
    assert lm.history[-1]["response"].cache_hit is True
    assert lm.history[-1]["response"].choices[0].message.content == first[0]


def test_outputs_handed_out_cannot_change_the_cache(llm_server):
    lm = openai_lm(llm_server)
    first = lm("mutable?")
    first.append("garbage")
    first[0] = "edited"
    assert lm("mutable?") == [lm.history[0]["outputs"][0]]


def test_cache_false_sends_every_call_and_stores_nothing(llm_server):
    lm = openai_lm(llm_server, cache=False)
    lm("uncached")
    lm("uncached")
    assert len(llm_server.model_requests) == 2
    assert len(dspy.cache) == 0
    cached_lm = openai_lm(llm_server)
    cached_lm("per call", cache=False)
    assert len(dspy.cache) == 0


def test_keys_equal_dspy_keys_for_the_same_call(llm_server):
    """DSPy 3.4.1, calling the same server, stores its answer under the key turbodspy computes."""
    import dspy as real_dspy

    real_dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    calls = [  # (the LM's kwargs, the call's arguments, the call's kwargs)
        ({"temperature": 0.2}, ("Say this is a test!",), {"temperature": 0.7}),
        (
            {"temperature": 0.2},
            (),
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi é ✓"}]},
        ),
        ({"temperature": 0.2}, ("Say this is a test!",), {"rollout_id": 1, "temperature": 1.0}),
        ({"temperature": 0.2}, ("A stop",), {"stop": ["\n\n"], "max_tokens": 50}),
        # Calls without call kwargs, keyed from the prompt or messages alone.
        ({"temperature": 0.2, "max_tokens": 50, "top_p": 1, "seed": 7}, ('Tab\tquote" é ✓',), {}),
        ({"temperature": None, "stop": ["\n"]}, ("A stop",), {}),
        ({}, (), {"messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}]}),
    ]
    responses = {"model_type": "responses", "use_developer_role": True, "temperature": 1.0, "max_tokens": 16000}
    system_first = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    for lm_kwargs, args, kwargs in calls:
        ours = openai_lm(llm_server, **lm_kwargs)
        theirs = real_dspy.LM("openai/gpt-4o-mini", api_base=llm_server.openai_base, api_key=SECRET, **lm_kwargs)
        ours(*args, **kwargs)
        before = set(real_dspy.cache.memory_cache.keys())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # DSPy deprecates messages= in favour of lm15
            theirs(*args, **kwargs)
        (dspy_key,) = set(real_dspy.cache.memory_cache.keys()) - before
        assert dspy_key in dspy.cache, (lm_kwargs, args, kwargs)
    # The Responses API with the developer role: system messages are rewritten before keying, in both.
    ours = dspy.LM("openai/gpt-5-mini", api_base=llm_server.openai_base, api_key=SECRET, **responses)
    theirs = real_dspy.LM("openai/gpt-5-mini", api_base=llm_server.openai_base, api_key=SECRET, **responses)
    ours(messages=system_first)
    before = set(real_dspy.cache.memory_cache.keys())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs(messages=system_first)
    (dspy_key,) = set(real_dspy.cache.memory_cache.keys()) - before
    assert dspy_key in dspy.cache
    (ours_sent, *_) = [r for r in llm_server.model_requests if r.path.endswith("/responses")]
    assert ours_sent.body["input"][0]["role"] == "developer"


def test_memory_tier_is_bounded_in_bytes():
    cache = dspy.Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None, memory_max_bytes=10_000)
    for i in range(100):
        cache.store(f"{i:064x}", {"response": {"text": "x" * 1000}, "i": i})
    assert cache.memory_bytes <= 10_000
    assert 1 <= len(cache) < 100
    assert cache.lookup(f"{99:064x}").record["i"] == 99  # the newest survive
    assert cache.lookup(f"{0:064x}") is None  # the oldest went first


def test_memory_tier_evicts_least_recently_used():
    cache = dspy.Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None, memory_max_entries=2)
    cache.store("a" * 64, {"v": "a"})
    cache.store("b" * 64, {"v": "b"})
    assert cache.lookup("a" * 64) is not None  # a is now the most recent
    cache.store("c" * 64, {"v": "c"})
    assert cache.lookup("b" * 64) is None
    assert cache.lookup("a" * 64) is not None


def test_concurrent_identical_requests_cause_one_provider_request(llm_server):
    llm_server.latency = 0.3
    lm = openai_lm(llm_server)
    start = threading.Barrier(16)
    answers = []

    def worker():
        start.wait()
        answers.append(lm("the same question at the same time")[0])

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 16 and len(set(answers)) == 1
    assert len(llm_server.model_requests) == 1
    assert len(lm.history) == 16


def test_a_failed_leader_never_hands_its_error_to_the_waiters(llm_server):
    # The key leaves credentials out, so a waiter's call may well succeed where the leader's failed.
    llm_server.latency = 0.3
    llm_server.fail_next("401", count=1)
    lm = openai_lm(llm_server, num_retries=0)
    start = threading.Barrier(4)
    failures, answers = [], []

    def worker():
        start.wait()
        try:
            answers.append(lm("fails only for the first caller")[0])
        except dspy.LMAuthError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(failures) == 1
    assert len(answers) == 3 and len(set(answers)) == 1
    assert len(llm_server.model_requests) == 4


class SlowAsyncLM(dspy.BaseLM):
    async def aforward(self, prompt=None, messages=None, **kwargs):
        await asyncio.sleep(0.3)
        return {"model": "slow-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}


def test_a_waiter_giving_up_does_not_cancel_the_request_for_the_others():
    lm = SlowAsyncLM("slow")

    async def main():
        async def impatient():
            await asyncio.sleep(0.01)
            return await asyncio.wait_for(lm.acall("q"), 0.05)

        async def patient():
            await asyncio.sleep(0.02)
            return await lm.acall("q")

        return await asyncio.gather(lm.acall("q"), impatient(), patient(), return_exceptions=True)

    leader, impatient, patient = asyncio.run(main())
    assert leader == ["ok"] and patient == ["ok"]
    assert isinstance(impatient, asyncio.TimeoutError)
    assert len(lm.history) == 2


def test_dict_outputs_handed_out_cannot_change_the_cache(llm_server):
    from turbodspy.testing import Reply

    llm_server.script([Reply(text=None, tool_calls=[{"name": "search", "arguments": {"q": "dspy"}}])])
    lm = openai_lm(llm_server)
    (first,) = lm("use a tool")
    first["tool_calls"][0]["function"]["name"] = "HACKED"
    lm.history[0]["outputs"][0]["tool_calls"][0]["function"]["name"] = "EDITED"
    (again,) = lm("use a tool")
    assert again["tool_calls"][0]["function"]["name"] == "search"
    again["tool_calls"].clear()
    assert lm("use a tool")[0]["tool_calls"][0]["function"]["name"] == "search"


class ScriptedLM(dspy.BaseLM):
    """A user's own LM: answers from a counter, so a cache hit is visible as a repeated answer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def forward(self, prompt=None, messages=None, **kwargs):
        self.calls += 1
        return {
            "model": "scripted-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {self.calls}"}}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
        }


def test_base_lm_subclasses_get_caching_and_history():
    lm = ScriptedLM("scripted")
    assert lm("q") == ["answer 1"]
    assert lm("q") == ["answer 1"]
    assert lm("other") == ["answer 2"]
    assert lm.calls == 2
    assert len(lm.history) == 3
    assert lm.history[1]["response"].cache_hit is True
    assert lm.history[0]["response_model"] == "scripted-1"
    uncached = ScriptedLM("scripted", cache=False)
    assert uncached("q") == ["answer 1"] and uncached("q") == ["answer 2"]


class Answer(pydantic.BaseModel):
    answer: str


def answer_format(text: str) -> str:
    return text.strip()


def test_requests_holding_pydantic_models_and_callables_are_keyed_as_dspy_keys_them():
    import dspy as real_dspy

    requests = [
        {"model": "m", "response_format": Answer},
        {"model": "m", "response_format": Answer(answer="42")},
        {"model": "m", "tools": {"format": answer_format}},
    ]
    ignored = ["api_key", "api_base", "base_url"]
    for request in requests:
        assert dspy.cache.cache_key(request, ignored) == real_dspy.cache.cache_key(request, ignored)
    assert dspy.cache.cache_key(requests[0]) != dspy.cache.cache_key({"model": "m"})


def test_unknown_memory_cache_files_are_refused(tmp_path):
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a turbodspy memory-cache file"):
        dspy.cache.load_memory_cache(bogus)


def test_memory_cache_round_trips_through_json(tmp_path, llm_server):
    lm = openai_lm(llm_server)
    answer = lm("save me")
    path = tmp_path / "memory.json"
    dspy.cache.save_memory_cache(path)
    assert json.loads(path.read_text())["format"] == "turbodspy-memory-cache"  # data, not a pickle
    assert SECRET.encode() not in path.read_bytes()
    dspy.configure_cache(enable_disk_cache=False)
    dspy.cache.load_memory_cache(path)
    assert lm("save me") == answer
    assert len(llm_server.model_requests) == 1


def test_disk_hits_promoted_to_memory_respect_the_byte_bound(tmp_path):
    writer = dspy.Cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=tmp_path)
    for i in range(50):
        writer.store(f"{i:064x}", {"response": {"text": "y" * 2000}, "i": i})
    reader = dspy.Cache(
        enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=tmp_path, memory_max_bytes=20_000
    )
    assert all(reader.lookup(f"{i:064x}").record["i"] == i for i in range(50))
    assert 0 < reader.memory_bytes <= 20_000
    assert 1 <= len(reader) < 50


def test_request_cache_decorator_caches_any_return_value():
    from turbodspy.clients.cache import request_cache

    calls = []

    @request_cache()
    def embed(text: str, model: str = "m") -> list[float]:
        calls.append(text)
        return [float(len(text)), 1.0]

    assert embed(text="hello") == [5.0, 1.0]
    assert embed(text="hello") == [5.0, 1.0]
    assert embed(text="other") == [5.0, 1.0]
    assert calls == ["hello", "other"]
    embed(text="hello")[0] = -1.0  # a caller's edit stays with the caller
    assert embed(text="hello") == [5.0, 1.0]
