"""A hit read from disk is decoded only as far as the call needs; everything a user can look at still matches
the original call (outputs, the response in history, cost), records of the older shape still serve, and a
record forged to pass its checksum is a miss."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import turbodspy as dspy
from turbodspy.clients.cache import OUTPUTS_ARE_MESSAGE_CONTENTS
from turbodspy.testing import Reply

SECRET = "sk-disk-hits-0000"


def openai_lm(server, **kwargs):
    return dspy.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key=SECRET, temperature=0.7, **kwargs)


def only_disk_key() -> str:
    (key,) = dspy.cache.disk.keys()
    return key


def test_a_disk_hit_matches_the_original_call_in_outputs_history_and_cost(llm_server):
    lm = openai_lm(llm_server)
    first = lm("What is the capital of France?")
    original = lm.history[-1]
    dspy.cache.reset_memory_cache()  # what a fresh process starts with

    again = lm("What is the capital of France?")
    hit = lm.history[-1]
    assert again == first
    assert len(llm_server.model_requests) == 1
    assert hit["response"].cache_hit is True and hit["usage"] == {}
    assert hit["outputs"] == original["outputs"]
    assert hit["response_model"] == original["response_model"]
    assert hit["cost"] == original["cost"]
    assert hit["response"].choices[0].message.content == first[0]
    assert hit["response"].model == original["response"].model
    assert hit["response"]["id"] == original["response"]["id"]


def test_a_disk_entry_holds_what_a_hit_needs_and_the_whole_record_on_request(llm_server):
    lm = openai_lm(llm_server)
    (text,) = lm("What is the capital of France?")
    key = only_disk_key()
    record = dspy.cache.disk.get(key)
    assert record["outputs"] == OUTPUTS_ARE_MESSAGE_CONTENTS  # the text is kept once, in the response
    entry = dspy.cache.disk.get_entry(key)
    assert entry.leading == ((text,), record["cost"], record["response_model"])
    assert entry.size == len(entry.stored) > 0
    assert entry.derived is None
    assert entry.record == record and entry.record is entry.record  # decoded once, then kept
    assert entry.stored.decode() == record and entry.stored.decode() is not entry.record  # a fresh copy each time


def deleted_files_mapped(directory: Path) -> list[str]:
    """Files under `directory` this process maps though they were deleted (their disk space still held)."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    return [line for line in maps if str(directory) in line and line.endswith("(deleted)")]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads this process's mappings")
def test_hits_from_disk_stay_whole_after_another_process_clears_the_cache_and_hold_no_deleted_file(llm_server):
    lm = openai_lm(llm_server)
    prompts = [f"Question {n}: what is {n} plus {n}?" for n in range(20)]
    originals = []
    for prompt in prompts:
        lm(prompt)
        originals.append(lm.history[-1]["response"])
    dspy.cache.reset_memory_cache()
    answers = [lm(prompt) for prompt in prompts]  # from disk; the responses in history are not decoded yet
    hits = lm.history[-len(prompts) :]
    directory = dspy.cache.disk.directory
    cleared = subprocess.run(
        [sys.executable, "-m", "turbodspy", "cache", "--dir", str(directory), "clear"], capture_output=True, timeout=60
    )
    assert cleared.returncode == 0, cleared.stderr
    assert deleted_files_mapped(directory), "this process maps the segment when another deletes it"
    assert lm("a new question") != answers[0]  # looking at the store again, this process sees the clear
    assert deleted_files_mapped(directory) == []
    for hit, original, (text,) in zip(hits, originals, answers, strict=True):
        assert hit["response"].choices[0].message.content == text == original.choices[0].message.content
        assert hit["response"]["id"] == original["id"]
    assert lm(prompts[3]) == answers[3]  # still in the memory tier, whole
    assert lm.history[-1]["response"]["id"] == originals[3]["id"]
    assert len(llm_server.model_requests) == len(prompts) + 1


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads this process's mappings")
def test_hits_read_through_a_replaced_cache_hold_no_file_another_process_deletes_later(llm_server):
    lm = openai_lm(llm_server)
    prompts = [f"Question {n}: what is {n} times {n}?" for n in range(10)]
    for prompt in prompts:
        lm(prompt)
    directory = dspy.cache.disk.directory
    dspy.cache.reset_memory_cache()
    answers = [lm(prompt) for prompt in prompts]  # from disk, held by the memory tier and history
    dspy.configure_cache(disk_cache_dir=str(directory))  # the old cache goes; its hits stay with us
    cleared = subprocess.run(
        [sys.executable, "-m", "turbodspy", "cache", "--dir", str(directory), "clear"], capture_output=True, timeout=60
    )
    assert cleared.returncode == 0, cleared.stderr
    assert deleted_files_mapped(directory) == []  # nothing of ours looks at the store again, and nothing is held
    for hit, (text,) in zip(lm.history[-len(prompts) :], answers, strict=True):
        assert hit["response"].choices[0].message.content == text


def test_dict_outputs_from_disk_are_equal_and_cannot_change_the_cache(llm_server):
    llm_server.script([Reply(text=None, tool_calls=[{"name": "search", "arguments": {"q": "dspy"}}])])
    lm = openai_lm(llm_server)
    (first,) = lm("use a tool")
    assert dspy.cache.disk.get(only_disk_key())["outputs"] == [first]  # not just text: kept as they are
    dspy.cache.reset_memory_cache()
    (from_disk,) = lm("use a tool")
    assert from_disk == first
    from_disk["tool_calls"][0]["function"]["name"] = "HACKED"
    lm.history[-1]["outputs"][0]["tool_calls"].clear()
    assert lm("use a tool")[0]["tool_calls"][0]["function"]["name"] == "search"
    assert len(llm_server.model_requests) == 1


def test_several_choices_and_reasoning_come_back_from_disk_as_they_were(llm_server):
    llm_server.script([Reply(text="first"), Reply(text="second")])
    lm = openai_lm(llm_server, n=2)
    texts = lm("two answers")
    llm_server.script([Reply(text="thought out", reasoning_content="because")])
    reasoned = lm("think first")
    assert texts == ["first", "second"] and reasoned[0]["reasoning_content"] == "because"
    dspy.cache.reset_memory_cache()
    assert lm("two answers") == texts
    assert lm("think first") == reasoned
    assert lm.history[-1]["response"].choices[0].message.reasoning_content == "because"
    assert len(llm_server.model_requests) == 2


def test_records_without_kept_outputs_still_serve_hits(llm_server):
    lm = openai_lm(llm_server)
    first = lm("an older record")
    key = only_disk_key()
    record = dspy.cache.disk.get(key)
    assert record["outputs"] == OUTPUTS_ARE_MESSAGE_CONTENTS  # the text is kept once, in the response
    older = {name: record[name] for name in ("response", "usage", "cost", "model")}  # the shape before outputs
    dspy.cache.disk.put(key, older)
    dspy.cache.reset_memory_cache()
    assert lm("an older record") == first
    assert lm.history[-1]["response"].choices[0].message.content == first[0]
    assert len(llm_server.model_requests) == 1


def test_the_generic_cache_api_returns_the_whole_record_of_a_disk_hit(llm_server):
    lm = openai_lm(llm_server)
    first = lm("whole record")
    key = only_disk_key()
    dspy.cache.reset_memory_cache()
    entry = dspy.cache.lookup(key)
    assert entry.record["outputs"] == OUTPUTS_ARE_MESSAGE_CONTENTS
    assert entry.record["response"]["choices"][0]["message"]["content"] == first[0]
    assert list(entry.record) == ["outputs", "cost", "response_model", "model", "response", "usage"]


def test_the_generic_get_of_a_disk_entry_gives_each_caller_its_own_equal_copy():
    request = {"model": "m", "messages": [{"role": "user", "content": "copies"}]}
    value = {"answer": {"text": "x", "scores": [1, 2.5, None]}, "n": 10**30}
    dspy.cache.put(request, value)
    dspy.cache.reset_memory_cache()  # the next get reads it from disk
    first = dspy.cache.get(request)
    assert first == value
    first["answer"]["scores"].append("changed")
    first["n"] = 0
    assert dspy.cache.lookup(dspy.cache.cache_key(request)).stored is not None  # it came from disk
    second = dspy.cache.get(request)  # now from memory, still fresh objects
    assert second == value and second is not first
    assert dspy.cache.get(request)["answer"] is not second["answer"]


def test_threads_hitting_the_same_disk_entries_at_once_all_get_the_original_answers(llm_server):
    import threading

    lm = openai_lm(llm_server)
    prompts = [f"threaded disk hit {i}" for i in range(60)]
    originals = {p: lm(p) for p in prompts}
    requests = len(llm_server.model_requests)
    dspy.cache.reset_memory_cache()  # every entry is on disk only; the threads race to read and promote them
    errors, start = [], threading.Barrier(8)

    def work(me: int) -> None:
        start.wait()
        for p in prompts[me % 3 :] + prompts[: me % 3]:  # overlapping orders
            out = lm(p)
            if out != originals[p]:
                errors.append((me, p, out))

    threads = [threading.Thread(target=work, args=(me,)) for me in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(llm_server.model_requests) == requests  # no thread went to the provider
    hits = list(lm.history)[-8 * len(prompts) :]
    assert all(h["response"].cache_hit and h["outputs"] == originals[h["prompt"]] for h in hits)
    assert {h["response"].choices[0].message.content for h in hits} == {o[0] for o in originals.values()}


def _forge_value_keeping_the_checksum_valid(cache_dir) -> None:
    """Replace the one record's value with malformed bytes of the same length, and fix its CRC to match:
    what only deliberate tampering produces (random damage fails the checksum)."""
    (segment,) = cache_dir.glob("seg-*.tds")
    data = bytearray(segment.read_bytes())
    at = data.index(b"TDR1")
    (length,) = struct.unpack_from("<I", data, at + 8)
    # An object holding one member whose string (length as a two-byte LEB128) is not UTF-8.
    text = length - 7
    assert 128 <= text < 128 * 128
    forged = b"\x08\x01\x01a\x06" + bytes([0x80 | (text & 0x7F), text >> 7]) + b"\xff" * text
    assert len(forged) == length
    data[at + 72 : at + 72 + length] = forged
    struct.pack_into("<I", data, at + 12, 0)
    struct.pack_into("<I", data, at + 12, zlib.crc32(bytes(data[at : at + 72 + length])))
    segment.write_bytes(bytes(data))


def test_a_record_forged_to_pass_its_checksum_is_a_miss(llm_server, tmp_path):
    lm = openai_lm(llm_server)
    first = lm("forge me")
    _forge_value_keeping_the_checksum_valid(dspy.cache.disk.directory)
    dspy.cache.reset_memory_cache()
    assert dspy.cache.disk.get_entry(only_disk_key()) is None
    assert lm("forge me") == first  # asked again: the server answers deterministically
    assert len(llm_server.model_requests) == 2
    report = dspy.cache.disk.verify()  # the forged record is damage; the fresh answer stored after it is not
    assert (report["bad"], report["ok"], report["entries"]) == (1, 1, 1)
    assert any((dspy.cache.disk.directory / "quarantine").iterdir())


def test_a_marker_record_whose_response_lacks_messages_is_decoded_whole(llm_server):
    lm = openai_lm(llm_server)
    lm("odd shape")
    key = only_disk_key()
    # A record that says its outputs are the messages' text, over a response whose choices carry none.
    odd = {
        "outputs": OUTPUTS_ARE_MESSAGE_CONTENTS,
        "cost": None,
        "response_model": "m",
        "model": lm.model,
        "response": {"model": "m", "choices": [{"index": 0, "text": "from the text field"}]},
        "usage": {},
    }
    dspy.cache.disk.put(key, odd)
    dspy.cache.reset_memory_cache()
    assert lm("odd shape") == ["from the text field"]
    assert len(llm_server.model_requests) == 1


def test_a_disk_hit_still_works_after_the_generic_api_decoded_its_record(llm_server):
    lm = openai_lm(llm_server)
    first = lm("decoded twice")
    dspy.cache.reset_memory_cache()
    assert dspy.cache.lookup(only_disk_key()).record["response"]  # DSPy's generic API decodes it whole
    assert lm("decoded twice") == first
    assert lm.history[-1]["response"].choices[0].message.content == first[0]
    assert len(llm_server.model_requests) == 1


def test_history_responses_from_disk_copy_deepcopy_and_pickle_as_data(llm_server):
    import copy
    import pickle

    lm = openai_lm(llm_server)
    first = lm("copy me")
    dspy.cache.reset_memory_cache()
    lm("copy me")
    response = lm.history[-1]["response"]
    for copied in (copy.copy(response), copy.deepcopy(response), pickle.loads(pickle.dumps(response))):
        assert copied.choices[0].message.content == first[0]
        assert copied == response and copied.cache_hit is True
    history = copy.deepcopy(lm.history)
    assert history[-1]["response"].choices[0].message.content == first[0]
    assert copy.copy(dspy.clients.response.DataView({"a": 1})).a == 1


def test_records_the_store_cannot_hand_back_whole_are_refused_or_missed(tmp_path):
    import sys

    from turbodspy.clients.disk_cache import DiskCache

    cache = DiskCache(tmp_path)
    key = "ab" * 32
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(ValueError, match="at most 4300 digits"):
            cache.put(key, {"n": 10**5000})
    finally:
        sys.set_int_max_str_digits(previous)
    cache._get_store().put(key, [1, 2, 3])  # not a record: only another writer could leave this
    assert cache.get_entry(key) is None
    cache.put(key, {"cost": 10**400})  # a price beyond any float counts as none
    assert cache.get(key) == {"cost": 10**400}
