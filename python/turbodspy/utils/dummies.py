"""`DummyLM`: a scripted LM for users' tests, answering from a list or a dict of field values, as DSPy's.

- A list of dicts: each call answers with the next dict's fields (then `answer: "No more responses"`).
- A dict of dicts: a call answers with the value whose key occurs in the last message.
- `follow_examples=True`: a call answers with the demo output whose input matches the current input.
Answers are formatted the way the adapter (ChatAdapter by default) expects the LM to write them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from turbodspy.clients.base_lm import BaseLM

_FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")


class DummyLM(BaseLM):
    """`DummyLM([{"answer": "red"}, {"answer": "blue"}])`: answers "red", then "blue"."""

    def __init__(
        self,
        answers: list[dict[str, Any]] | dict[str, dict[str, Any]],
        follow_examples: bool = False,
        reasoning: bool = False,
        adapter: Any = None,
    ) -> None:
        # Scripted answers are consumed call by call, so responses are never cached.
        super().__init__("dummy", "chat", 0.0, 1000, False)
        if not isinstance(answers, (list, dict)):
            raise TypeError(f"DummyLM answers must be a list or a dict of field dicts, got {type(answers).__name__}.")
        self.answers: Any = iter(answers) if isinstance(answers, list) else answers
        self.follow_examples = follow_examples
        self.reasoning = reasoning
        if adapter is None:
            from turbodspy.adapters import ChatAdapter

            adapter = ChatAdapter()
        self.adapter = adapter

    def _use_example(self, messages: list[dict[str, Any]]) -> str | None:
        counts: defaultdict[str, int] = defaultdict(int)
        for message in messages:
            content = message.get("content")
            if isinstance(content, str) and (match := _FIELD_HEADER.match(content)):
                counts[content[match.start() : match.end()]] += 1
        if not counts:
            return None
        top = max(counts.values())
        output_fields = [field for field, count in counts.items() if count != top]
        final_input = messages[-1]["content"].split("\n\n")[0]
        for prompt, reply in zip(reversed(messages[:-1]), reversed(messages), strict=False):
            if any(field in reply["content"] for field in output_fields) and final_input in prompt["content"]:
                return reply["content"]
        return None

    def _format_answer_fields(self, values: dict[str, Any]) -> str:
        from turbodspy.adapters.chat_adapter import FieldInfoWithName
        from turbodspy.signatures import OutputField

        fields = {FieldInfoWithName(name=name, info=OutputField()): value for name, value in values.items()}
        try:
            return self.adapter.format_field_with_value(fields, role="assistant")
        except TypeError:  # adapters whose method takes no role (ChatAdapter)
            return self.adapter.format_field_with_value(fields)

    def _answer(self, messages: list[dict[str, Any]]) -> str:
        if self.follow_examples:
            return self._use_example(messages) or ""
        if isinstance(self.answers, dict):
            last = messages[-1]["content"]
            for key, values in self.answers.items():
                if key in last:
                    return self._format_answer_fields(values)
            return "No more responses"
        return self._format_answer_fields(next(self.answers, {"answer": "No more responses"}))

    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        messages = messages or [{"role": "user", "content": prompt}]
        choices = []
        for index in range(kwargs.get("n") or 1):
            message: dict[str, Any] = {"role": "assistant", "content": self._answer(messages)}
            if self.reasoning:
                message["reasoning_content"] = "Some reasoning"
            choices.append({"index": index, "message": message, "finish_reason": "stop"})
        return {
            "id": None,
            "object": "chat.completion",
            "model": "dummy",
            "choices": choices,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        return self.forward(prompt=prompt, messages=messages, **kwargs)

    def get_convo(self, index: int) -> tuple[Any, Any]:
        """The messages and outputs of the `index`-th call in this LM's history."""
        entry = self.history[index]
        return entry["messages"], entry["outputs"]
