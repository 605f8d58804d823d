"""How `LM` calls LiteLLM: cost still priced, LiteLLM's logging only when someone listens, the user's settings kept."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import turbodspy as dspy
from turbodspy.clients import provider

SECRET = "sk-test-SECRETKEY-1234567890"
PROMPT = "Say this is a test!"


@pytest.fixture
def litellm():
    """LiteLLM as a fresh process has it (no callbacks registered), its callbacks and settings restored after."""
    module = provider.load_litellm()
    names = [
        "callbacks",
        "success_callback",
        "failure_callback",
        "input_callback",
        "_async_success_callback",
        "_async_failure_callback",
        "_async_input_callback",
    ]
    saved = {name: list(getattr(module, name)) for name in names}
    saved_redaction = module.turn_off_message_logging
    # LiteLLM sets up function callbacks only while this list of what it has set up is empty.
    saved_set_up = list(module.utils.callback_list)
    for name in names:
        getattr(module, name)[:] = []
    module.utils.callback_list = []
    yield module
    for name, value in saved.items():
        getattr(module, name)[:] = value
    module.turn_off_message_logging = saved_redaction
    module.utils.callback_list = saved_set_up


def uncached_lm(server, model="openai/gpt-4o-mini", **kwargs):
    return dspy.LM(model, api_base=server.openai_base, api_key=SECRET, cache=False, **kwargs)


def _price(litellm, model: str, usage: dict) -> float:
    """What LiteLLM's own price list says the tokens of `usage` cost."""
    prices = litellm.model_cost[model]
    return (
        usage["prompt_tokens"] * prices["input_cost_per_token"]
        + usage["completion_tokens"] * prices["output_cost_per_token"]
    )


def test_history_prices_uncached_calls_of_known_models(llm_server, litellm):
    lm = uncached_lm(llm_server)
    lm(PROMPT)
    asyncio.run(lm.acall(PROMPT))
    assert len(lm.history) == 2
    for entry in lm.history:
        assert entry["usage"]["prompt_tokens"] > 0 and entry["usage"]["completion_tokens"] > 0
        assert entry["cost"] > 0
        assert entry["cost"] == pytest.approx(_price(litellm, "gpt-4o-mini", entry["usage"]))


def test_bare_model_name_is_priced_too(llm_server, litellm):
    lm = dspy.LM("gpt-4o-mini", api_base=llm_server.openai_base, api_key=SECRET, cache=False)
    lm(PROMPT)
    entry = lm.history[-1]
    assert entry["cost"] == pytest.approx(_price(litellm, "gpt-4o-mini", entry["usage"]))


class _Recorder:
    """What a user's LiteLLM callback saw, and a way to wait for it (LiteLLM runs callbacks in the background)."""

    def __init__(self):
        self.events: list[dict] = []
        self.arrived = threading.Event()

    def record(self, kind: str, kwargs: dict, response) -> None:
        self.events.append({"kind": kind, "messages": kwargs.get("messages"), "response": response})
        self.arrived.set()


def _custom_logger(recorder: _Recorder):
    from litellm.integrations.custom_logger import CustomLogger

    class Logger(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            recorder.record("sync", kwargs, response_obj)

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            recorder.record("async", kwargs, response_obj)

    return Logger()


def test_a_users_litellm_callback_sees_sync_calls(llm_server, litellm):
    recorder = _Recorder()
    litellm.callbacks = [_custom_logger(recorder)]
    lm = uncached_lm(llm_server)
    outputs = lm(PROMPT)
    assert recorder.arrived.wait(10), "the user's LiteLLM callback was never called"
    event = recorder.events[0]
    assert event["kind"] == "sync"
    assert event["response"].choices[0].message.content == outputs[0]
    # LiteLLM's default (no redaction) is kept: the user's logger sees what was sent.
    assert event["messages"] == [{"role": "user", "content": PROMPT}]


def test_a_users_litellm_callback_sees_async_calls(llm_server, litellm):
    recorder = _Recorder()
    litellm.callbacks = [_custom_logger(recorder)]
    lm = uncached_lm(llm_server)

    async def call_and_wait():
        outputs = await lm.acall(PROMPT)
        for _ in range(1000):  # LiteLLM logs from a task on this loop: give it turns until it has run
            if recorder.arrived.is_set():
                break
            await asyncio.sleep(0.01)
        return outputs

    outputs = asyncio.run(call_and_wait())
    assert recorder.arrived.is_set(), "the user's LiteLLM callback was never called"
    event = next(e for e in recorder.events if e["kind"] == "async")
    assert event["response"].choices[0].message.content == outputs[0]


def test_a_plain_function_success_callback_is_called(llm_server, litellm):
    recorder = _Recorder()

    def on_success(kwargs, completion_response, start_time, end_time):
        recorder.record("function", kwargs, completion_response)

    litellm.success_callback = [on_success]
    lm = uncached_lm(llm_server)
    outputs = lm(PROMPT)
    assert recorder.arrived.wait(10), "the user's success_callback was never called"
    assert recorder.events[0]["response"].choices[0].message.content == outputs[0]


def test_a_users_message_redaction_setting_is_honoured(llm_server, litellm):
    recorder = _Recorder()
    litellm.turn_off_message_logging = True
    litellm.callbacks = [_custom_logger(recorder)]
    uncached_lm(llm_server)(PROMPT)
    assert recorder.arrived.wait(10)
    assert PROMPT not in str(recorder.events[0]["messages"])
    assert litellm.turn_off_message_logging is True


def test_async_calls_leave_no_litellm_logging_task_when_nobody_listens(llm_server, litellm):
    # LiteLLM's Gemini code builds a Cache when it loads, which puts a marker among the callbacks; it listens to
    # nothing (`litellm.cache` stays None).
    litellm.Cache(type="local")
    assert "cache" in litellm._async_success_callback and litellm.cache is None
    lm = uncached_lm(llm_server)

    async def calls_then_other_tasks():
        for i in range(3):
            await lm.acall(f"{PROMPT} {i}")
        await asyncio.sleep(0)
        return {t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    assert asyncio.run(calls_then_other_tasks()) == set()
    assert len(lm.history) == 3 and all(e["cost"] > 0 for e in lm.history)


_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys, threading
    import turbodspy as dspy
    from turbodspy.testing import LocalLLMServer

    def logging_threads():
        return sorted(t.name for t in threading.enumerate() if t.name.startswith("litellm"))

    with LocalLLMServer() as server:
        lm = dspy.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key="sk-local-123456", cache=False)
        for i in range(5):
            lm(f"question {i}")
        quiet = logging_threads()
        import litellm
        seen = threading.Event()
        litellm.success_callback = [lambda *args: seen.set()]
        lm("one more question")
        print(json.dumps({"quiet": quiet, "listened": seen.wait(10)}))
    """
)


def test_sync_calls_start_no_litellm_logging_thread_when_nobody_listens():
    # A fresh process, so no earlier test has started LiteLLM's logging threads.
    result = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["quiet"] == []
    assert report["listened"] is True


class _CountingRelay:
    """A TCP relay in front of the server that counts the connections clients open through it."""

    def __init__(self, target_port: int):
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self._target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def relay(llm_server):
    relay = _CountingRelay(llm_server.port)
    yield relay
    relay.close()


def _text_lm(relay, **kwargs):
    base = f"http://127.0.0.1:{relay.port}/v1"
    return dspy.LM("openai/gpt-3.5-turbo-instruct", model_type="text", api_base=base, api_key=SECRET, **kwargs)


def test_text_calls_reuse_one_connection(llm_server, relay):
    lm = _text_lm(relay, cache=False)
    outputs = [lm(f"{PROMPT} {i}")[0] for i in range(4)]
    assert all(outputs) and len(set(outputs)) == 4
    assert [r.path for r in llm_server.model_requests] == ["/v1/completions"] * 4
    assert relay.connections == 1


def test_async_text_calls_reuse_one_connection_per_event_loop(llm_server, relay):
    lm = _text_lm(relay, cache=False)

    async def calls():
        return [(await lm.acall(f"{PROMPT} {i}"))[0] for i in range(4)]

    assert all(asyncio.run(calls()))
    assert relay.connections == 1
    assert all(asyncio.run(calls()))  # a new loop opens its own connection
    assert relay.connections == 2
    assert all(entry["cost"] > 0 for entry in lm.history)


def test_text_calls_keep_the_timeout_litellm_gives_them(llm_server, relay):
    llm_server.latency = 2.0
    lm = _text_lm(relay, cache=False, num_retries=0, timeout=0.2)
    with pytest.raises(dspy.LMTimeoutError):
        lm(PROMPT)
    # Another timeout is another client; the first call's does not linger.
    assert _text_lm(relay, cache=False, num_retries=0, timeout=10)(PROMPT)[0]


@pytest.mark.parametrize("model_type", ["chat", "text"])
def test_a_call_that_times_out_raises_a_timeout_error(llm_server, model_type):
    llm_server.latency = 2.0
    model = "openai/gpt-4o-mini" if model_type == "chat" else "openai/gpt-3.5-turbo-instruct"
    lm = uncached_lm(llm_server, model=model, model_type=model_type, num_retries=0, timeout=0.2)
    for call in (lambda: lm(PROMPT), lambda: asyncio.run(lm.acall(PROMPT))):
        with pytest.raises(dspy.LMTimeoutError) as info:
            call()
        assert info.value.status is None and info.value.provider == "openai"
        assert SECRET not in str(info.value)


_FIRST_ASYNC_CALL = textwrap.dedent(
    """
    import asyncio, json, sys
    import turbodspy as dspy
    from turbodspy.testing import LocalLLMServer

    async def main(base):
        lm = dspy.LM("openai/gpt-4o-mini", api_base=base, api_key="sk-local-123456", cache=False)
        turns_while_loading = 0
        call_done = False

        async def other_task():
            nonlocal turns_while_loading
            while not call_done:
                if "litellm" in sys.modules and not hasattr(sys.modules["litellm"], "acompletion"):
                    turns_while_loading += 1  # LiteLLM is being imported and this task still gets turns
                await asyncio.sleep(0.001)

        other = asyncio.create_task(other_task())
        outputs = await lm.acall("hi")
        call_done = True
        await other
        return {"outputs": outputs, "turns_while_loading": turns_while_loading}

    with LocalLLMServer() as server:
        assert "litellm" not in sys.modules
        print(json.dumps(asyncio.run(main(server.openai_base))))
    """
)


def test_the_first_async_call_loads_litellm_without_blocking_the_event_loop():
    result = subprocess.run([sys.executable, "-c", _FIRST_ASYNC_CALL], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["outputs"] and report["outputs"][0]
    assert report["turns_while_loading"] > 1


def test_a_users_litellm_cache_keeps_litellm_logging_on(llm_server, litellm):
    saved = litellm.cache
    litellm.cache = litellm.Cache(type="local")
    try:
        assert provider.litellm_logging.anyone_listens(litellm, {})
    finally:
        litellm.cache = saved
    assert not provider.litellm_logging.anyone_listens(litellm, {})
    assert provider.litellm_logging.anyone_listens(litellm, {"success_callback": [print]})
