"""Predict and ChainOfThought against the local LLM server, side by side with the installed DSPy."""

from __future__ import annotations

import json

import dspy as real_dspy
import pytest

import turbodspy as dspy
from turbodspy.utils import DummyLM


def lm_for(lib, server, **kwargs):
    return lib.LM("openai/test-model", api_base=server.openai_base, api_key="local-secret", cache=False, **kwargs)


def run_both(server, build, call):
    """Run the same program with turbodspy and DSPy; return (our result, their result, our body, their body)."""
    out = []
    for lib in (dspy, real_dspy):
        server.clear()
        with lib.context(lm=lm_for(lib, server)):
            result = call(build(lib))
        bodies = [r.body for r in server.requests]
        out.append((result, bodies))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def test_predict_sends_dspys_request_and_parses_the_same_answer(llm_server):
    ours, theirs, our_bodies, their_bodies = run_both(
        llm_server,
        lambda lib: lib.Predict("question -> answer", temperature=0.5),
        lambda p: p(question="What is 2+2?"),
    )
    assert our_bodies == their_bodies and len(our_bodies) == 1
    assert our_bodies[0]["temperature"] == 0.5
    assert ours.answer == theirs.answer and ours.toDict() == theirs.toDict()


def test_chain_of_thought_adds_reasoning_first_as_dspy(llm_server):
    ours, theirs, our_bodies, their_bodies = run_both(
        llm_server, lambda lib: lib.ChainOfThought("question -> answer"), lambda p: p(question="How many floors?")
    )
    assert our_bodies == their_bodies
    assert list(ours.keys()) == ["reasoning", "answer"] and ours.toDict() == theirs.toDict()
    ours_sig = dspy.ChainOfThought("question -> answer").predict.signature
    their_sig = real_dspy.ChainOfThought("question -> answer").predict.signature
    assert list(ours_sig.output_fields) == list(their_sig.output_fields) == ["reasoning", "answer"]
    assert ours_sig.fields["reasoning"].json_schema_extra == their_sig.fields["reasoning"].json_schema_extra


def test_config_defaults_and_per_call_override(llm_server):
    predict = dspy.Predict("question -> answer", rollout_id=1, temperature=1.0)
    with dspy.context(lm=lm_for(dspy, llm_server)):
        predict(question="What is 1 + 52?")
        first = llm_server.last_request.body
        predict(question="What is 1 + 52?", config={"rollout_id": 2, "temperature": 0.3})
        second = llm_server.last_request.body
    assert first["temperature"] == 1.0 and second["temperature"] == 0.3
    assert predict.get_config() == {"rollout_id": 1, "temperature": 1.0}


def test_n_gives_completions_and_raises_low_temperature(llm_server):
    with dspy.context(lm=lm_for(dspy, llm_server)):
        pred = dspy.Predict("question -> answer", n=3)(question="hi")
    assert len(pred.completions) == 3 and pred.answer == pred.completions.answer[0]
    assert llm_server.last_request.body["temperature"] == 0.7


def test_lm_per_module_per_call_and_context(llm_server):
    configured, own, per_call = (lm_for(dspy, llm_server, max_tokens=n) for n in (100, 200, 300))
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=configured):
        predict(question="a")
        assert llm_server.last_request.body["max_tokens"] == 100
        predict.set_lm(own)
        assert predict.get_lm() is own
        predict(question="a")
        assert llm_server.last_request.body["max_tokens"] == 200
        predict(question="a", lm=per_call)
        assert llm_server.last_request.body["max_tokens"] == 300
    assert len(own.history) == 1 and len(per_call.history) == 1 and len(configured.history) == 1


def test_demos_reach_the_prompt_as_in_dspy(llm_server):
    def build(lib):
        p = lib.Predict("question -> answer")
        p.demos = [lib.Example(question="1+1?", answer="2"), lib.Example(question="2+2?", answer="4")]
        return p

    ours, theirs, our_bodies, their_bodies = run_both(llm_server, build, lambda p: p(question="3+3?"))
    assert our_bodies == their_bodies and ours.answer == theirs.answer
    assert len(our_bodies[0]["messages"]) == 6


def test_json_adapter_from_settings(llm_server):
    with dspy.context(lm=lm_for(dspy, llm_server), adapter=dspy.JSONAdapter()):
        pred = dspy.Predict("question -> answer: int")(question="How many?")
    assert isinstance(pred.answer, int)
    assert "json" in json.dumps(llm_server.last_request.body).lower()


def test_missing_lm_and_positional_args_are_clear_errors():
    predict = dspy.Predict("question -> answer")
    with pytest.raises(ValueError, match="No LM is loaded"):
        predict(question="x")
    with pytest.raises(ValueError, match="keyword arguments"):
        predict("x")
    with dspy.context(lm="openai/gpt-4o-mini"), pytest.raises(ValueError, match="not a string"):
        predict(question="x")
    with dspy.context(lm=object()), pytest.raises(ValueError, match=r"must be a dspy\.BaseLM"):
        predict(question="x")


def test_async_acall_matches_sync(llm_server):
    import asyncio

    cot = dspy.ChainOfThought("question -> answer")
    with dspy.context(lm=lm_for(dspy, llm_server)):
        sync = cot(question="Why?")
        async_ = asyncio.run(cot.acall(question="Why?"))
    assert sync.toDict() == async_.toDict()


class Pipeline(dspy.Module):
    def __init__(self):
        super().__init__()
        self.draft = dspy.ChainOfThought("question -> draft")
        self.steps = [dspy.Predict("draft -> answer")]

    def forward(self, question):
        return self.steps[0](draft=self.draft(question=question).draft)


def test_named_predictors_set_lm_deepcopy_and_reset_copy(llm_server):
    program = Pipeline()
    assert [name for name, _ in program.named_predictors()] == ["draft.predict", "steps[0]"]
    lm = lm_for(dspy, llm_server)
    program.set_lm(lm)
    assert program.get_lm() is lm
    program.steps[0].demos = [dspy.Example(draft="d", answer="a")]
    copy = program.deepcopy()
    assert copy.steps[0].demos == program.steps[0].demos and copy.steps[0] is not program.steps[0]
    reset = program.reset_copy()
    assert reset.steps[0].demos == [] and reset.steps[0].lm is None and program.steps[0].demos
    pred = program(question="q")
    assert pred.answer and len(lm.history) == 2
    with pytest.raises(ValueError, match="Multiple LMs"):
        program.draft.predict.lm = lm_for(dspy, llm_server)
        program.get_lm()


def test_save_and_load_json_state_without_secrets(tmp_path, llm_server):
    program = Pipeline()
    program.set_lm(lm_for(dspy, llm_server, temperature=0.3))
    program.steps[0].demos = [dspy.Example(draft="d", answer="a").with_inputs("draft")]
    program.draft.predict.signature = program.draft.predict.signature.with_instructions("Be brief.")
    path = tmp_path / "program.json"
    program.save(path)
    text = path.read_text()
    assert "local-secret" not in text and "api_key" not in text
    state = json.loads(text)
    assert state["steps[0]"]["demos"] == [{"draft": "d", "answer": "a"}]
    assert state["draft.predict"]["lm"]["temperature"] == 0.3

    loaded = Pipeline()
    loaded.load(path)
    assert loaded.steps[0].demos[0]["answer"] == "a"
    assert loaded.draft.predict.signature.instructions == "Be brief."
    assert loaded.draft.predict.lm.kwargs["temperature"] == 0.3
    assert "api_base" not in loaded.draft.predict.lm.kwargs  # endpoints load only when trusted

    # DSPy reads what we saved.
    theirs = real_dspy.ChainOfThought("question -> draft")
    theirs.load_state({"predict": state["draft.predict"] | {"lm": None}})
    assert theirs.predict.signature.instructions == "Be brief."


def test_save_refuses_pickle(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        Pipeline().save(tmp_path / "p.pkl")
    with pytest.raises(ValueError, match="JSON"):
        Pipeline().save(tmp_path / "dir", save_program=True)
    with pytest.raises(ValueError, match=r"\.json"):
        Pipeline().load(tmp_path / "p.pkl", allow_pickle=True)


def test_load_refuses_state_of_another_program(tmp_path):
    path = tmp_path / "p.json"
    dspy.Predict("a -> b").save(path)
    program = Pipeline()
    with pytest.raises(ValueError, match="no entry for parameter"):
        program.load(path)
    assert program.steps[0].demos == []


def test_dummy_lm_answers_from_list_and_dict():
    with dspy.context(lm=DummyLM([{"answer": "red"}, {"answer": "blue"}])):
        predict = dspy.Predict("question -> answer")
        assert predict(question="sky?").answer == "red"
        assert predict(question="sky?").answer == "blue"
        assert predict(question="sky?").answer == "No more responses"
    lm = DummyLM({"capital of France": {"reasoning": "known", "answer": "Paris"}})
    with dspy.context(lm=lm):
        pred = dspy.ChainOfThought("question -> answer")(question="What is the capital of France?")
    assert (pred.reasoning, pred.answer) == ("known", "Paris")
    messages, outputs = lm.get_convo(-1)
    assert "capital of France" in messages[-1]["content"] and "Paris" in outputs[0]


def test_dummy_lm_follows_examples_like_dspy():
    demos_ours = [dspy.Example(question="What color is the sky?", answer="blue")]
    with dspy.context(lm=DummyLM([{"answer": "red"}], follow_examples=True)):
        pred = dspy.Predict("question -> answer")(question="What color is the sky?", demos=demos_ours)
    demos_theirs = [real_dspy.Example(question="What color is the sky?", answer="blue")]
    with real_dspy.context(lm=real_dspy.utils.DummyLM([{"answer": "red"}], follow_examples=True)):
        theirs = real_dspy.Predict("question -> answer")(question="What color is the sky?", demos=demos_theirs)
    assert pred.answer == theirs.answer == "blue"


def test_track_usage_per_prediction_like_dspy(llm_server):
    usages = []
    for lib in (dspy, real_dspy):
        lm = lm_for(lib, llm_server)
        with lib.context(lm=lm, track_usage=True):
            usages.append(lib.ChainOfThought("question -> answer")(question="Count the words here").get_lm_usage())
    ours, theirs = usages
    assert set(ours) == set(theirs) == {"openai/test-model"}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert ours["openai/test-model"][key] == theirs["openai/test-model"][key] > 0


def test_cache_hits_add_no_usage(llm_server):
    lm = dspy.LM("openai/test-model", api_base=llm_server.openai_base, api_key="local", cache=True)
    question = f"cached usage probe {id(lm)}"
    with dspy.context(lm=lm, track_usage=True):
        first = dspy.Predict("question -> answer")(question=question)
        second = dspy.Predict("question -> answer")(question=question)
    assert first.get_lm_usage()["openai/test-model"]["total_tokens"] > 0
    assert second.get_lm_usage() == {} and second.answer == first.answer


def _recorder(base: type) -> type:
    class Rec(base):
        def __init__(self):
            self.events = []

        def on_module_start(self, call_id, instance, inputs):
            self.events.append("module_start")

        def on_module_end(self, call_id, outputs, exception=None):
            self.events.append("module_end")

        def on_adapter_format_start(self, call_id, instance, inputs):
            self.events.append("format_start")

        def on_adapter_format_end(self, call_id, outputs, exception=None):
            self.events.append("format_end")

        def on_adapter_parse_start(self, call_id, instance, inputs):
            self.events.append("parse_start")

        def on_adapter_parse_end(self, call_id, outputs, exception=None):
            self.events.append(("parse_end", outputs))

        def on_lm_start(self, call_id, instance, inputs):
            self.events.append("lm_start")

        def on_lm_end(self, call_id, outputs, exception=None):
            self.events.append("lm_end")

    return Rec


def test_callbacks_see_module_adapter_and_lm_in_dspys_order(llm_server):
    sequences = []
    for lib, base in ((dspy, dspy.BaseCallback), (real_dspy, real_dspy.utils.BaseCallback)):
        recorder = _recorder(base)()
        with lib.context(lm=lm_for(lib, llm_server), callbacks=[recorder]):
            lib.ChainOfThought("question -> answer")(question="Why is the sky blue?")
        sequences.append(recorder.events)
    assert sequences[0] == sequences[1]
    assert sequences[0][0] == "module_start" and sequences[0][-1] == "module_end" and "lm_start" in sequences[0]


def test_an_adapter_with_its_own_call_signature_is_called_by_keyword():
    class Reordered(dspy.ChatAdapter):
        def __call__(self, lm, signature, inputs, demos, lm_kwargs):
            self.seen = (signature.signature, inputs, demos, lm_kwargs)
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    adapter = Reordered()
    with dspy.context(lm=DummyLM([{"answer": "red"}]), adapter=adapter):
        pred = dspy.Predict("question -> answer", temperature=0.3)(question="sky?")
    assert pred.answer == "red"
    assert adapter.seen == ("question -> answer", {"question": "sky?"}, [], {"temperature": 0.3})


def test_inputs_named_like_call_keywords_keep_dspys_meaning():
    # `demos` is both an input field here and a keyword Predict takes: as in DSPy, the keyword wins.
    prompts = []
    for lib, lm in ((dspy, DummyLM([{"answer": "ok"}])), (real_dspy, real_dspy.utils.DummyLM([{"answer": "ok"}]))):
        with lib.context(lm=lm):
            assert lib.Predict("question, demos -> answer")(question="q", demos=[]).answer == "ok"
        prompts.append(lm.history[-1]["messages"])
    assert prompts[0] == prompts[1]
    assert "[[ ## demos ## ]]" not in prompts[0][-1]["content"]


@pytest.mark.parametrize(
    ("signature", "inputs"),
    [
        ("question, context -> answer", {"question": "q"}),  # an input missing
        ("question -> answer", {"question": "q", "hint": "h"}),  # an input the signature does not have
        ("question: str, count: int -> answer", {"question": "q", "count": "three"}),  # a value of the wrong type
        ("question: str, count: int -> answer", {"question": "q", "count": 3}),  # nothing to warn about
    ],
)
def test_input_warnings_match_dspy(caplog, signature, inputs):
    warnings = []
    for lib, lm in ((dspy, DummyLM([{"answer": "ok"}])), (real_dspy, real_dspy.utils.DummyLM([{"answer": "ok"}]))):
        caplog.clear()
        with caplog.at_level("WARNING"), lib.context(lm=lm):
            assert lib.Predict(signature)(**inputs).answer == "ok"
        warnings.append([r.getMessage() for r in caplog.records if r.name.endswith("predict.predict")])
    assert warnings[0] == warnings[1]
    assert bool(warnings[0]) == (inputs != {"question": "q", "count": 3})
