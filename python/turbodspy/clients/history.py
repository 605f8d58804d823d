"""Call history: a bounded record of LM calls per LM, per calling module and globally, and its pretty printer.

Appending is O(1) whatever the bound (`settings.max_history_size`), so long batch runs never slow down.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from turbodspy.settings import settings

MAX_GLOBAL_HISTORY = 10_000


class CallHistory:
    """A list-like record of calls that drops the oldest entry once it holds `maxlen` (read on each append)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Iterable[dict[str, Any]] = ()):
        self._entries: deque[dict[str, Any]] = deque(entries)

    def append(self, entry: dict[str, Any], maxlen: int | None = None) -> None:
        entries = self._entries
        entries.append(entry)
        if maxlen is not None:
            while len(entries) > maxlen:
                entries.popleft()

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._entries)

    def __reversed__(self) -> Iterator[dict[str, Any]]:
        return reversed(self._entries)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self._entries))
            if step == 1 and start <= stop:
                return list(itertools.islice(self._entries, start, stop))
            return list(self._entries)[index]
        return self._entries[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CallHistory):
            return list(self._entries) == list(other._entries)
        if isinstance(other, (list, tuple)):
            return list(self._entries) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(list(self._entries))


GLOBAL_HISTORY = CallHistory()


def record_history(owner: Any, entry: dict[str, Any]) -> None:
    """Record a call in the global history, the LM's history and the calling modules' histories."""
    if settings.disable_history:
        return
    GLOBAL_HISTORY.append(entry, MAX_GLOBAL_HISTORY)
    max_size = settings.max_history_size
    if max_size == 0:
        return
    for recorder in (owner, *(settings.caller_modules or ())):
        _append_bounded(recorder.history, entry, max_size)


def _append_bounded(history: Any, entry: dict[str, Any], max_size: int) -> None:
    if isinstance(history, CallHistory):
        history.append(entry, max_size)
        return
    # A plain list (a user's own BaseLM or module may assign one): trim it the slow way.
    history.append(entry)
    if len(history) > max_size:
        del history[: len(history) - max_size]


def pretty_print_history(history: Any, n: int = 1, file: TextIO | None = None) -> None:
    """Print the last `n` calls: their messages and what the LM answered. Colors only when printing to a terminal."""
    out = file or sys.stdout
    colors = file is None and out.isatty()

    def paint(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colors else text

    for entry in history[-n:] if n > 0 else []:
        messages = entry["messages"] or [{"role": "user", "content": entry["prompt"]}]
        print("\n\n", file=out)
        print(paint("34", f"[{entry.get('timestamp', 'unknown time')}]"), file=out)
        for message in messages:
            print(paint("31", f"{str(message.get('role', 'user')).capitalize()} message:"), file=out)
            print(_content_text(message.get("content")), file=out)
            _print_tool_calls(message.get("tool_calls"), out, paint)
            print("", file=out)
        outputs = entry["outputs"] or [""]
        first = outputs[0]
        text = first.get("text") if isinstance(first, dict) else first
        if text:
            print(paint("31", "Response:"), file=out)
            print(paint("32", str(text).strip()), file=out)
        if isinstance(first, dict):
            _print_tool_calls(first.get("tool_calls"), out, paint)
        if len(outputs) > 1:
            print(paint("31", f" \t (and {len(outputs) - 1} other completions)"), file=out)
    print("\n\n", file=out)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content.strip()
    parts = []
    for part in content or []:
        kind = part.get("type")
        if kind == "text":
            parts.append(part["text"].strip())
        elif kind == "image_url":
            url = part["image_url"].get("url", "")
            head, _, data = url.partition("base64,")
            parts.append(f"<{head}base64,<IMAGE BASE 64 ENCODED({len(data)})>" if data else f"<image_url: {url}>")
        else:
            parts.append(f"<{kind}>")
    return "\n".join(parts)


def _print_tool_calls(calls: Any, out: TextIO, paint: Any) -> None:
    if not calls:
        return
    print(paint("31", "Tool calls:"), file=out)
    for call in calls:
        function = call.get("function") or {}
        arguments = function.get("arguments", call.get("arguments", {}))
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        print(paint("32", f"{function.get('name') or call.get('name', '<unknown>')}: {arguments}"), file=out)


def inspect_history(n: int = 1, file: TextIO | None = None) -> None:
    """Print the last `n` calls made by any LM (the global history)."""
    pretty_print_history(GLOBAL_HISTORY, n, file=file)
