"""Callbacks: start/end handlers with shared call ids, instance and settings callbacks, exceptions, nesting."""

from __future__ import annotations

import asyncio
import threading

import pytest

import turbodspy as dspy
from turbodspy.utils.callback import ACTIVE_CALL_ID, BaseCallback, with_callbacks


class Recorder(BaseCallback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_module_start(self, call_id, instance, inputs):
        self.events.append(("start", call_id, instance, dict(inputs), ACTIVE_CALL_ID.get()))

    def on_module_end(self, call_id, outputs, exception=None):
        self.events.append(("end", call_id, outputs, exception))


class Doubler:
    def __init__(self, callbacks=None, inner=None):
        self.callbacks = callbacks or []
        self.inner = inner

    @with_callbacks
    def __call__(self, x, scale=2):
        if x < 0:
            raise ValueError("negative input")
        if self.inner is not None:
            x = self.inner(x)
        return x * scale

    @with_callbacks
    async def acall(self, x, scale=2):
        await asyncio.sleep(0)
        return x * scale


def test_instance_callback_sees_inputs_outputs_and_one_call_id():
    rec = Recorder()
    assert Doubler(callbacks=[rec])(3, scale=5) == 15
    (start, end) = rec.events
    assert start[0] == "start" and end[0] == "end"
    assert start[1] == end[1] and len(start[1]) == 32
    assert start[3] == {"x": 3, "scale": 5}
    assert end[2] == 15 and end[3] is None


def test_settings_callbacks_apply_to_every_instance_and_each_call_gets_a_new_id():
    rec = Recorder()
    with dspy.context(callbacks=[rec]):
        Doubler()(1)
        Doubler()(2)
    ids = [e[1] for e in rec.events if e[0] == "start"]
    assert len(ids) == 2 and ids[0] != ids[1]
    Doubler()(3)
    assert len(rec.events) == 4  # outside the context nothing more is recorded


def test_exception_reaches_end_handler_and_propagates():
    rec = Recorder()
    with pytest.raises(ValueError, match="negative"):
        Doubler(callbacks=[rec])(-1)
    end = rec.events[-1]
    assert end[0] == "end" and end[2] is None and isinstance(end[3], ValueError)


def test_nested_call_sees_parent_call_id_as_active():
    rec = Recorder()
    outer = Doubler(callbacks=[rec], inner=Doubler(callbacks=[rec]))
    assert outer(2) == 8
    outer_start, inner_start = rec.events[0], rec.events[1]
    assert outer_start[4] is None
    assert inner_start[4] == outer_start[1]
    assert ACTIVE_CALL_ID.get() is None


def test_broken_callback_does_not_break_the_call(caplog):
    class Broken(BaseCallback):
        def on_module_start(self, call_id, instance, inputs):
            raise RuntimeError("boom")

    assert Doubler(callbacks=[Broken()])(4) == 8
    assert "boom" in caplog.text


def test_async_methods_get_callbacks():
    rec = Recorder()
    assert asyncio.run(Doubler(callbacks=[rec]).acall(4)) == 8
    assert [e[0] for e in rec.events] == ["start", "end"]
    assert rec.events[1][2] == 8


def test_context_callbacks_do_not_leak_into_other_threads():
    rec = Recorder()
    seen = []
    with dspy.context(callbacks=[rec]):
        t = threading.Thread(target=lambda: seen.append(Doubler()(1)))
        t.start()
        t.join()
    assert seen == [2] and rec.events == []
