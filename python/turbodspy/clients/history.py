"""Call history: a bounded record of LM calls per LM, per calling module and globally, and its pretty printer.

Appending is O(1) whatever the bound (`settings.max_history_size`), so long batch runs never slow down.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from typing import Any, TextIO

from turbodspy import _core
from turbodspy.settings import current as current_settings

MAX_GLOBAL_HISTORY = 10_000


class CallHistory(deque):
    """A list-like record of calls, bounded by `maxlen`: appending drops the oldest entry in O(1).

    Reads like a list: `len(h)`, `h[-1]`, `h[-3:]`, iteration, and equality with lists.
    """

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self)[index]
        return deque.__getitem__(self, index)

    def pop(self, index: int = -1) -> Any:
        """As `list.pop`: the last entry by default, `pop(0)` the oldest."""
        if index == -1:
            return deque.pop(self)
        if index == 0:
            return self.popleft()
        entry = self[index]
        del self[index]
        return entry

    def __add__(self, other: Any) -> list:
        return list(self) + list(other)

    def __radd__(self, other: Any) -> list:
        return list(other) + list(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (deque, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))


GLOBAL_HISTORY = CallHistory(maxlen=MAX_GLOBAL_HISTORY)

# `datetime.now().isoformat()` at a fraction of the cost: the date and time of day are formatted once a second.
timestamp = _core.timestamp


def record_history(owner: Any, entry: dict[str, Any], config: dict[str, Any] | None = None) -> None:
    """Record a call in the global history, the LM's history and the calling modules' histories."""
    config = config or current_settings()
    if config["disable_history"]:
        return
    GLOBAL_HISTORY.append(entry)
    max_size = config["max_history_size"]
    if max_size == 0:
        return
    callers = config["caller_modules"]
    for recorder in (owner, *callers) if callers else (owner,):
        history = recorder.history
        if type(history) is CallHistory and history.maxlen == max_size:
            history.append(entry)
        else:
            recorder.history = _appended(history, entry, max_size)


def _appended(history: Any, entry: dict[str, Any], max_size: int) -> Any:
    """`history` with `entry` appended and trimmed to `max_size`: the same object when it can be."""
    if isinstance(history, CallHistory):
        if history.maxlen != max_size:  # the setting changed: carry the newest entries over
            history = CallHistory(history, maxlen=max_size)
        history.append(entry)
        return history
    # A plain list (a user's own BaseLM or module may assign one): trim it the slow way.
    history.append(entry)
    if len(history) > max_size:
        del history[: len(history) - max_size]
    return history


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
