"""Calls without call kwargs are keyed from their prompt or messages alone (`_core.RequestKeyer`).

Every such key equals SHA-256 of the whole request's sorted-key JSON (orjson's bytes, as DSPy hashes them), and a
change to the LM (its model, its kwargs, replaced or edited in place) is seen by its next call.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import pickle
import threading
import types
import weakref

import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import turbodspy as dspy
from turbodspy.clients.cache import IGNORED_KEY_ARGS

SECRET = "sk-test-SECRETKEY-1234567890"


def whole_request_key(lm, prompt, messages, asynchronous: bool) -> str:
    """The key as DSPy computes it: the whole request, identifier added, connection args left out."""
    request = {
        "model": lm.model,
        "messages": messages or [{"role": "user", "content": prompt}],
        **lm.kwargs,
        "_fn_identifier": lm._cache_identifier(asynchronous),
    }
    kept = {k: v for k, v in request.items() if k not in IGNORED_KEY_ARGS}
    return hashlib.sha256(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)).hexdigest()


def key_of_call(lm, prompt=None, messages=None, asynchronous=False) -> str | None:
    return lm._prepare(prompt, messages, {}, asynchronous)[3]


scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
kwarg_names = st.sampled_from(
    ["temperature", "max_tokens", "stop", "n", "top_p", "api_key", "api_base", "base_url", "Z", "_x", "é", "seed"]
)
# Mostly scalars (the keyer's own case); sometimes a list or dict, which the general path keys instead.
lm_kwargs = st.dictionaries(kwarg_names | st.text(max_size=8), scalars | json_values, max_size=6)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": json_values}),
    max_size=3,
)

# One LM for every example: each replaces its kwargs, so the keyer must notice every change.
shared_lm = dspy.LM("openai/gpt-4o-mini", api_key=SECRET)


@settings(max_examples=400, deadline=None)
@given(
    model=st.text(min_size=1, max_size=12),
    kwargs=lm_kwargs,
    prompt=st.none() | st.text(max_size=40),
    messages=st.none() | messages,
    asynchronous=st.booleans(),
)
def test_keys_equal_the_whole_requests_key(model, kwargs, prompt, messages, asynchronous):
    lm = shared_lm
    lm.model, lm.kwargs = model, {k: v for k, v in kwargs.items() if k not in ("model", "messages", "rollout_id")}
    try:
        expected = whole_request_key(lm, prompt, messages, asynchronous)
    except orjson.JSONEncodeError:  # lone surrogates, integers orjson refuses: refused by us too
        with pytest.raises((ValueError, TypeError)):
            key_of_call(lm, prompt, messages, asynchronous)
        return
    assert key_of_call(lm, prompt, messages, asynchronous) == expected


def test_an_lm_whose_kwargs_change_in_place_keys_its_new_requests(llm_server):
    lm = dspy.LM("openai/gpt-4o-mini", api_base=llm_server.openai_base, api_key=SECRET, temperature=0.2)
    first = lm("Which temperature?")
    lm.kwargs["temperature"] = 0.9
    lm("Which temperature?")
    lm.kwargs["stop"] = ["\n"]
    lm("Which temperature?")
    lm.kwargs["stop"].append("END")  # a list edited in place: the general path keys such an LM
    lm("Which temperature?")
    del lm.kwargs["stop"]
    lm.model = "openai/gpt-4o"
    lm("Which temperature?")
    sent = [(r.body["model"], r.body["temperature"], r.body.get("stop")) for r in llm_server.model_requests]
    assert sent == [
        ("gpt-4o-mini", 0.2, None),
        ("gpt-4o-mini", 0.9, None),
        ("gpt-4o-mini", 0.9, ["\n"]),
        ("gpt-4o-mini", 0.9, ["\n", "END"]),
        ("gpt-4o", 0.9, None),
    ]
    # Back to the first state, by other objects of equal value: the first answer, from the cache.
    lm.model, lm.kwargs = "openai/gpt-4o-" + "mini", dict(lm.kwargs, temperature=float("0.2"))
    assert lm("Which temperature?") == first
    assert len(llm_server.model_requests) == 5


def test_messages_holding_a_value_that_is_not_data_go_uncached_as_in_dspy():
    class Note(pydantic.BaseModel):
        text: str

    lm = dspy.LM("openai/gpt-4o-mini", api_key=SECRET)
    note = [{"role": "user", "content": "x", "note": Note(text="hi")}]
    assert key_of_call(lm, messages=note) is None  # DSPy transforms top-level values only, then fails to key it


def test_text_that_is_not_valid_unicode_is_refused_with_the_fix():
    lm = dspy.LM("openai/gpt-4o-mini", api_key=SECRET)
    with pytest.raises(ValueError, match="not valid Unicode"):
        lm("bad \udc80 text")


def test_copies_and_pickles_of_a_called_lm_key_alike(llm_server):
    lm = dspy.LM("openai/gpt-4o-mini", api_base=llm_server.openai_base, api_key=SECRET, temperature=0.3)
    answer = lm("Copy me")
    for other in (copy.copy(lm), copy.deepcopy(lm), pickle.loads(pickle.dumps(lm)), lm.copy()):
        assert other("Copy me") == answer
    changed = lm.copy(temperature=0.4)
    changed("Copy me")
    assert lm("Copy me") == answer
    assert [r.body["temperature"] for r in llm_server.model_requests] == [0.3, 0.4]


def test_threads_keying_while_another_edits_the_lm_get_keys_of_whole_requests():
    lm = dspy.LM("openai/gpt-4o-mini", api_key=SECRET, temperature=0.0)
    temperatures = [i / 10 for i in range(7)]
    wrong = []

    def keyer(t: int):
        for i in range(2000):
            prompt = f"thread {t} prompt {i}"
            # Which edit a call sees is a race; its key is still that of one whole request, never of a mix.
            valid = {whole_request_key(with_temperature(lm, value), prompt, None, False) for value in temperatures}
            if key_of_call(lm, prompt) not in valid:
                wrong.append((t, i))

    run_while_editing(lm, temperatures, keyer, threads=4)
    assert not wrong


def run_while_editing(lm, temperatures, work, threads: int):
    """`work(t)` on `threads` threads while another cycles `lm.kwargs["temperature"]` through `temperatures`."""
    stop = threading.Event()

    def editor():
        i = 0
        while not stop.is_set():
            i += 1
            lm.kwargs["temperature"] = temperatures[i % len(temperatures)]

    edit = threading.Thread(target=editor)
    edit.start()
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    edit.join()


def with_temperature(lm, temperature):
    other = copy.copy(lm)
    other.kwargs = {**lm.kwargs, "temperature": temperature}
    return other


def test_every_answer_is_stored_under_the_key_of_the_request_that_got_it(llm_server):
    # Threads call while another edits the LM: a miss keys the request as it is sent, never as it was.
    lm = dspy.LM("openai/gpt-4o-mini", api_base=llm_server.openai_base, api_key=SECRET, temperature=0.0)

    def caller(t: int):
        for i in range(60):
            lm(f"thread {t} prompt {i}")

    run_while_editing(lm, [0.0, 0.1, 0.2], caller, threads=3)
    sent = [(r.body["temperature"], r.body["messages"][0]["content"]) for r in llm_server.model_requests]
    dspy.cache.reset_memory_cache()
    for temperature, prompt in sent:  # each answer is found again by the request that got it
        dspy.LM("openai/gpt-4o-mini", api_base=llm_server.openai_base, api_key=SECRET, temperature=temperature)(prompt)
    assert len(llm_server.model_requests) == len(sent)


def test_kwargs_held_in_another_mapping_are_keyed_by_the_general_path(llm_server):
    lm = dspy.LM("openai/gpt-4o-mini", api_base=llm_server.openai_base, api_key=SECRET)
    lm.kwargs = types.MappingProxyType({**lm.kwargs, "temperature": 0.4})
    first = lm("a mapping")
    assert lm("a mapping") == first
    assert key_of_call(lm, "a mapping") == whole_request_key(lm, "a mapping", None, False)
    assert [r.body["temperature"] for r in llm_server.model_requests] == [0.4]


def test_an_lm_whose_kwargs_refer_back_to_it_is_collected():
    class Tool:
        def __init__(self, lm):
            self.lm = lm

    lm = dspy.LM("openai/gpt-4o-mini", api_key=SECRET)
    lm.kwargs["tools"] = [Tool(lm)]
    key_of_call(lm, "hi")
    alive = weakref.ref(lm)
    del lm
    gc.collect()
    assert alive() is None


class SlotLM(dspy.LM):
    __slots__ = ("extra",)


class OwnStateLM(dspy.LM):
    def __getstate__(self):
        return dict(self.__dict__)


def test_subclasses_keep_their_slots_and_their_own_pickling(llm_server):
    slot_lm = SlotLM("openai/gpt-4o-mini", api_base=llm_server.openai_base, api_key=SECRET)
    slot_lm.extra = 42
    slot_lm("slots")
    assert copy.copy(slot_lm).extra == 42 and copy.deepcopy(slot_lm).extra == 42
    own = OwnStateLM("openai/gpt-4o-mini", api_base=llm_server.openai_base, api_key=SECRET)
    answer = own("own state")
    assert copy.deepcopy(own)("own state") == answer
    assert pickle.loads(pickle.dumps(own)).kwargs == own.kwargs


def test_a_subclass_identifier_is_asked_on_every_call():
    class Versioned(dspy.BaseLM):
        version = 1

        def _cache_identifier(self, asynchronous):
            return f"versioned.v{self.version}"

    lm = Versioned("m")
    first = key_of_call(lm, "hi")
    lm.version = 2
    assert key_of_call(lm, "hi") != first
    assert key_of_call(lm, "hi") == whole_request_key(lm, "hi", None, False)
