"""Modules over the real LM layer and the local LLM server: usage per prediction, callbacks, batch, history."""

from __future__ import annotations

import gc

import pytest

import turbodspy as dspy
from turbodspy.utils.callback import BaseCallback


@pytest.fixture
def lm(llm_server):
    return dspy.LM("openai/test-model", api_base=llm_server.openai_base, api_key="local", cache=False)


class Echo(dspy.Module):
    """Calls the LM directly (no signature), sync and async."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, question):
        return dspy.Prediction(answer=self.lm(question)[0])

    async def aforward(self, question):
        return dspy.Prediction(answer=(await self.lm.acall(question))[0])


def test_track_usage_gives_each_prediction_its_own_usage(lm):
    program = Echo(lm)
    with dspy.context(track_usage=True):
        short = program(question="hi")
        long = program(question="a much longer question with many more words in it than the other")
    usage_short, usage_long = short.get_lm_usage(), long.get_lm_usage()
    assert set(usage_short) == {"openai/test-model"}
    assert usage_short["openai/test-model"]["prompt_tokens"] > 0
    assert usage_long["openai/test-model"]["prompt_tokens"] > usage_short["openai/test-model"]["prompt_tokens"]
    assert program(question="hi").get_lm_usage() is None  # tracking off again


def test_track_usage_in_async_batch_is_per_example(lm):
    program = Echo(lm)
    with dspy.context(track_usage=True):
        results = program.batch(
            [dspy.Example(question="q" * (i + 1)).with_inputs("question") for i in range(6)],
            disable_progress_bar=True,
        )
    assert all(r.get_lm_usage()["openai/test-model"]["total_tokens"] > 0 for r in results)


def test_callbacks_see_module_then_lm_with_parent_ids(lm):
    events = []

    class Rec(BaseCallback):
        def on_module_start(self, call_id, instance, inputs):
            events.append(("module_start", call_id, inputs))

        def on_module_end(self, call_id, outputs, exception=None):
            events.append(("module_end", call_id, outputs))

        def on_lm_start(self, call_id, instance, inputs):
            events.append(("lm_start", call_id, inputs))

        def on_lm_end(self, call_id, outputs, exception=None):
            events.append(("lm_end", call_id, outputs))

    with dspy.context(callbacks=[Rec()]):
        pred = Echo(lm)(question="What is 2+2?")
    assert [e[0] for e in events] == ["module_start", "lm_start", "lm_end", "module_end"]
    assert events[0][1] == events[3][1] and events[1][1] == events[2][1] and events[0][1] != events[1][1]
    assert events[0][2] == {"args": (), "kwargs": {"question": "What is 2+2?"}}
    assert events[2][2] == [pred.answer]


def test_module_history_records_its_lm_calls(lm):
    program = Echo(lm)
    program(question="one")
    program(question="two")
    assert len(program.history) == 2
    assert program.history[-1]["messages"] is None and program.history[-1]["prompt"] == "two"


# LiteLLM's sync path, called from several threads at once, drops some HTTP clients without closing them; collect
# them here so their ResourceWarnings are not raised in whichever later test the garbage collector runs in.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_async_batch_against_server_keeps_order_and_answers_agree_with_sync(lm, llm_server):
    program = Echo(lm)
    data = [dspy.Example(question=f"question number {i}").with_inputs("question") for i in range(40)]
    async_results = program.batch(data, disable_progress_bar=True)
    thread_results = program.batch(data, num_threads=4, disable_progress_bar=True)
    gc.collect()
    assert [r.answer for r in async_results] == [r.answer for r in thread_results]
    assert len({r.answer for r in async_results}) == 40
    assert len(llm_server.requests) == 80


def test_server_errors_are_collected_per_example(lm, llm_server):
    program = Echo(lm.copy(num_retries=0))
    llm_server.fail_next("401", count=2)
    data = [dspy.Example(question=f"q{i}").with_inputs("question") for i in range(5)]
    results, failed, errors = program.batch(
        data, num_threads=1, return_failed_examples=True, max_errors=5, disable_progress_bar=True
    )
    assert [r is None for r in results] == [True, True, False, False, False]
    assert [ex.question for ex in failed] == ["q0", "q1"]
    assert all(isinstance(e, dspy.LMAuthError) for e in errors)


def test_track_usage_around_a_batch_totals_every_example(lm):
    program = Echo(lm)
    data = [dspy.Example(question=f"question {i}").with_inputs("question") for i in range(8)]
    with dspy.context(track_usage=True), dspy.track_usage() as tracker:
        thread_results = program.batch(data, num_threads=4, disable_progress_bar=True)
        async_results = program.batch(data, disable_progress_bar=True)
    total = tracker.get_total_tokens()["openai/test-model"]["total_tokens"]
    assert len(thread_results) == len(async_results) == 8
    assert total > 0 and len(tracker.usage_data["openai/test-model"]) == 16
