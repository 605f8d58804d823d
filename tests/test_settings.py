"""`configure` and `context` under real threads and asyncio tasks: every call uses the LM of its own context."""

from __future__ import annotations

import asyncio
import threading

import pytest

import turbodspy as dspy


class NamedLM(dspy.BaseLM):
    """An LM that answers with its own name and the prompt, so a caller can tell which LM served it."""

    def forward(self, prompt=None, messages=None, **kwargs):
        text = prompt or messages[-1]["content"]
        return {
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"{self.model}:{text}"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


def ask(prompt: str) -> str:
    return dspy.settings.lm(prompt, cache=False)[0]


def test_configure_from_another_thread_says_to_use_context():
    dspy.configure(lm=NamedLM("main"))
    errors = []

    def other_thread():
        try:
            dspy.configure(lm=NamedLM("other"))
        except RuntimeError as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert len(errors) == 1 and "context" in errors[0]
    assert dspy.settings.lm.model == "main"


def test_configure_from_a_second_task_is_refused():
    async def main():
        dspy.configure(num_threads=4)

        async def second():
            dspy.configure(num_threads=5)

        with pytest.raises(RuntimeError, match="context"):
            await asyncio.create_task(second())

    asyncio.run(main())
    assert dspy.settings.num_threads == 4


def test_context_nests_and_restores_even_on_exceptions():
    dspy.configure(lm=NamedLM("global"))
    with dspy.context(lm=NamedLM("outer")):
        assert ask("q") == "outer:q"
        with pytest.raises(ZeroDivisionError):
            with dspy.context(lm=NamedLM("inner"), num_threads=3):
                assert ask("q") == "inner:q"
                assert dspy.settings.num_threads == 3
                raise ZeroDivisionError
        assert ask("q") == "outer:q"
        assert dspy.settings.num_threads == 8  # the default again
    assert ask("q") == "global:q"


def test_settings_are_readable_as_attributes_items_and_get():
    with dspy.context(track_usage=True):
        assert dspy.settings.track_usage is True
        assert dspy.settings["track_usage"] is True
        assert dspy.settings.get("no_such_setting", 7) == 7
        assert "track_usage" in dspy.settings
    with pytest.raises(AttributeError):
        _ = dspy.settings.no_such_setting


def test_sixteen_threads_switching_lms_each_use_their_own():
    dspy.configure(lm=NamedLM("global"))
    results: dict[int, list[tuple[str, str]]] = {}
    start = threading.Barrier(16)

    def worker(i: int) -> None:
        start.wait()
        seen = []
        for round_ in range(50):
            name = f"lm-{i}-{round_ % 3}"
            with dspy.context(lm=NamedLM(name)):
                seen.append((name, ask(f"{i}/{round_}")))
            seen.append(("global", ask(f"{i}/{round_}")))
        results[i] = seen

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16
    for seen in results.values():
        for expected, answer in seen:
            assert answer.startswith(f"{expected}:")


def test_asyncio_tasks_switching_lms_each_use_their_own():
    dspy.configure(lm=NamedLM("global"))

    async def task(i: int) -> list[tuple[str, str]]:
        seen = []
        for round_ in range(20):
            name = f"task-{i}-{round_ % 2}"
            with dspy.context(lm=NamedLM(name)):
                await asyncio.sleep(0)  # let the other tasks run inside this context
                seen.append((name, (await dspy.settings.lm.acall(f"{i}/{round_}", cache=False))[0]))
        return seen

    async def main():
        return await asyncio.gather(*(task(i) for i in range(32)))

    for seen in asyncio.run(main()):
        for expected, answer in seen:
            assert answer.startswith(f"{expected}:")
    assert ask("after") == "global:after"
