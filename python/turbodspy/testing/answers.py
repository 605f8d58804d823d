"""Deterministic answers for the local LLM server, computed from the conversation a request carries.

The same conversation always gets the same answer and a different one gets a different answer. When the
prompt asks for DSPy-style output fields (ChatAdapter `[[ ## name ## ]]` sections or a JSONAdapter JSON object)
or the request asks for JSON (`response_format`, Ollama `format`), the answer has that shape, with a valid
value of each field's type.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

Message = tuple[str, str]
"""One turn of a conversation: (role, text)."""


@dataclass(frozen=True)
class Reply:
    """A scripted completion: its text plus optional extras the response carries.

    `text=None` keeps the server's deterministic answer and only adds the extras (with `tool_calls`, it means
    no text at all, as providers answer a tool call). `tool_calls` items are
    `{"name": str, "arguments": dict | str}` (an `id` is optional). `finish_reason=None` lets the server pick
    ("stop", "length" or "tool_calls").
    """

    text: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Extra keys merged into the OpenAI chat `message` object (other wire formats ignore them)."""

    def __post_init__(self) -> None:
        for call in self.tool_calls or []:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str) or "arguments" not in call:
                raise ValueError(f"each tool call must be {{'name': str, 'arguments': dict | str}}, got {call!r}")


_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_OUTPUT_FIELD_LINE = re.compile(r"^\d+\. `(\w+)` \((.+?)\):", re.MULTILINE)
_OBJECTIVE = "In adhering to this structure, your objective is:"
_SCHEMA_NOTE = "must adhere to the JSON schema: "
_ENUM_NOTE = "must be one of: "
_LITERAL_NOTE = "must exactly match (no extra characters) one of: "


def count_tokens(text: str) -> int:
    """Approximate token count: words and punctuation marks, at least one for non-empty text."""
    return len(_TOKEN.findall(text))


def truncate_tokens(text: str, limit: int) -> str:
    """The prefix of `text` holding its first `limit` tokens."""
    if limit <= 0:
        return ""
    for i, match in enumerate(_TOKEN.finditer(text)):
        if i == limit - 1:
            return text[: match.end()]
    return text


def split_for_stream(text: str) -> list[str]:
    """Pieces of `text` (each a token with its leading whitespace) whose concatenation is `text`."""
    pieces = re.findall(r"\s*\S+", text)
    if not pieces:
        return [text] if text else []
    tail = text[len("".join(pieces)) :]
    if tail:
        pieces[-1] += tail
    return pieces


def digest(conversation: list[Message], choice: int) -> str:
    """A stable hex digest of the conversation and the choice index."""
    payload = json.dumps([list(m) for m in conversation], ensure_ascii=False) + f"#{choice}"
    return hashlib.sha256(payload.encode()).hexdigest()


def compose(
    conversation: list[Message],
    *,
    choice: int = 0,
    json_schema: dict[str, Any] | None = None,
    json_mode: bool = False,
) -> str:
    """The answer text for `conversation` (the `choice`-th of several when `n > 1`)."""
    tag = digest(conversation, choice)
    rng = random.Random(tag)
    subject = _subject(conversation)
    if json_schema is not None:
        return json.dumps(_value_from_schema(json_schema, json_schema, rng, subject, tag, "value"))
    fields = _dspy_output_fields(conversation)
    if fields is not None and fields.mode == "json":
        return json.dumps({name: _json_value(name, f, rng, subject, tag) for name, f in fields.items()}, indent=2)
    if fields is not None and fields.mode == "xml":
        return "\n".join(
            f"<{name}>\n{_chat_value(name, f, rng, subject, tag)}\n</{name}>" for name, f in fields.items()
        )
    if fields is not None:
        sections = [f"[[ ## {name} ## ]]\n{_chat_value(name, f, rng, subject, tag)}" for name, f in fields.items()]
        return "\n\n".join([*sections, "[[ ## completed ## ]]"])
    if json_mode:
        return json.dumps({"answer": _sentence(subject, tag)})
    return _sentence(subject, tag)


def reasoning_for(conversation: list[Message], choice: int = 0) -> str:
    """A deterministic reasoning text, for thinking blocks and `reasoning_content`."""
    return f'Thinking about "{_subject(conversation)}" step by step (trace {digest(conversation, choice)[:8]}).'


def _sentence(subject: str, tag: str) -> str:
    return f'You said: "{subject}" (reply {tag[:8]}).'


def _subject(conversation: list[Message]) -> str:
    """A short one-line summary of what the last user turn said, without DSPy's instructions."""
    text = ""
    for role, content in reversed(conversation):
        if role == "user":
            text = content
            break
    if not text and conversation:
        text = conversation[-1][1]
    if "Your output fields are:" in text and _OBJECTIVE in text:
        # A text-completion prompt: the user's part follows the paragraph stating the objective.
        text = text.split(_OBJECTIVE, 1)[1].partition("\n\n")[2]
    text = text.split("Respond with the corresponding output fields")[0]
    text = text.split("Respond with a JSON object")[0]
    text = _MARKER.sub(" ", text)
    text = re.sub(r"</?\w+>", " ", text)
    # The summary lands inside answers of every shape (XML, JSON, sections): keep it plain printable text.
    text = "".join(ch if ch.isprintable() and ch not in "<>&\\" else " " for ch in text)
    text = " ".join(text.split()).replace('"', "'")
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class _Field:
    type: str
    schema: dict[str, Any] | None = None
    choices: list[str] | None = None


class _Fields(dict):
    """Output fields in the order DSPy asks for them; `mode` says which adapter asked: chat, json or xml."""

    mode: str = "chat"


def _dspy_output_fields(conversation: list[Message]) -> _Fields | None:
    system = "\n".join(text for role, text in conversation if role == "system")
    last_user = next((text for role, text in reversed(conversation) if role == "user"), "")
    if "Your output fields are:" not in system:
        # A text-completion prompt: DSPy joined the system and user messages into one.
        system = last_user
    block = system.split("Your output fields are:", 1)
    if len(block) < 2:
        return None
    types = dict(_OUTPUT_FIELD_LINE.findall(block[1].split("All interactions will be structured", 1)[0]))
    if not types:
        return None

    fields = _Fields()
    if "Outputs will be a JSON object" in system or "Respond with a JSON object" in last_user:
        fields.mode = "json"
    elif "output fields wrapped in XML tags" in last_user:
        fields.mode = "xml"
    order = _requested_order(last_user, fields.mode)
    for name in order or list(types):
        if name == "completed" or name not in types:
            continue
        fields[name] = _Field(types[name])
    for name, f in fields.items():
        note = _note_for(system, name, fields.mode)
        if _SCHEMA_NOTE in note:
            try:
                f.schema = json.loads(note.split(_SCHEMA_NOTE, 1)[1])
            except json.JSONDecodeError:
                f.schema = None
        elif _LITERAL_NOTE in note:
            f.choices = note.split(_LITERAL_NOTE, 1)[1].split("; ")
        elif _ENUM_NOTE in note:
            f.choices = note.split(_ENUM_NOTE, 1)[1].split("; ")
    return fields


def _requested_order(last_user: str, mode: str) -> list[str]:
    if mode == "xml":
        sentence = last_user.rsplit("output fields wrapped in XML tags", 1)
        return re.findall(r"`<(\w+)>`", sentence[1].split(".")[0]) if len(sentence) == 2 else []
    if mode == "json":
        sentence = last_user.rsplit("Respond with a JSON object", 1)
        return re.findall(r"`(\w+)`", sentence[1]) if len(sentence) == 2 else []
    sentence = last_user.rsplit("Respond with the corresponding output fields", 1)
    return _MARKER.findall(sentence[1]) if len(sentence) == 2 else []


def _note_for(system: str, name: str, mode: str) -> str:
    """The `# note: ...` DSPy writes after a field's placeholder, unescaped."""
    if mode == "xml":
        match = re.search("<" + re.escape(name) + r">\n\{" + re.escape(name) + r"\}([^\n]*)", system)
        return match.group(1) if match else ""
    if mode == "json":
        match = re.search(r"Outputs will be a JSON object with the following fields\.\s*(\{.*?\n\})", system, re.S)
        if match:
            try:
                return str(json.loads(match.group(1)).get(name, ""))
            except json.JSONDecodeError:
                return ""
        return ""
    match = re.search(r"\[\[ ## " + re.escape(name) + r" ## \]\]\n\{" + re.escape(name) + r"\}([^\n]*)", system)
    return match.group(1) if match else ""


def _chat_value(name: str, f: _Field, rng: random.Random, subject: str, tag: str) -> str:
    value = _json_value(name, f, rng, subject, tag)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    return json.dumps(value)


def _json_value(name: str, f: _Field, rng: random.Random, subject: str, tag: str) -> Any:
    if f.choices:
        return f.choices[int(tag[:8], 16) % len(f.choices)]
    if f.schema is not None:
        return _value_from_schema(f.schema, f.schema, rng, subject, tag, name)
    return _value_from_type(_parse_type(f.type), rng, subject, tag, name)


def _parse_type(text: str) -> tuple[str, list]:
    """Parse a Python annotation as DSPy prints it (`list[dict[str, int]]`, `int | None`) into (name, args)."""
    text = text.strip()
    parts = _split_top(text, "|")
    if len(parts) > 1:
        return ("Union", [_parse_type(p) for p in parts])
    if "[" in text and text.endswith("]"):
        name, inner = text.split("[", 1)
        return (name.strip().split(".")[-1], [_parse_type(p) for p in _split_top(inner[:-1], ",")])
    return (text.split(".")[-1], [])


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _value_from_type(parsed: tuple[str, list], rng: random.Random, subject: str, tag: str, name: str) -> Any:
    kind, args = parsed
    lowered = kind.lower()
    if lowered in ("union", "optional"):
        options = [a for a in args if a[0] not in ("None", "NoneType")]
        return _value_from_type(options[0], rng, subject, tag, name) if options else None
    if lowered == "literal":
        values = [a[0].strip("'\"") for a in args]
        return values[int(tag[:8], 16) % len(values)] if values else ""
    if lowered == "int":
        return rng.randint(1, 999)
    if lowered == "float":
        return round(rng.uniform(0, 100), 2)
    if lowered == "bool":
        return rng.random() < 0.5
    if lowered in ("list", "set", "tuple", "sequence", "frozenset"):
        item = args[0] if args and args[0][0] != "..." else ("str", [])
        return [_value_from_type(item, rng, subject, _subtag(tag, i), name) for i in range(2)]
    if lowered in ("dict", "mapping"):
        value_type = args[1] if len(args) == 2 else ("str", [])
        return {f"key{i}": _value_from_type(value_type, rng, subject, tag, name) for i in range(1, 3)}
    return _text_value(name, subject, tag)


def _value_from_schema(
    schema: dict[str, Any], root: dict[str, Any], rng: random.Random, subject: str, tag: str, name: str
) -> Any:
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _value_from_schema(target, root, rng, subject, tag, name)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][int(tag[:8], 16) % len(schema["enum"])]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _value_from_schema(options[0], root, rng, subject, tag, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "integer":
        low, high = schema.get("minimum", 1), schema.get("maximum", max(999, schema.get("minimum", 1)))
        return rng.randint(int(low), int(high))
    if kind == "number":
        return round(rng.uniform(schema.get("minimum", 0), schema.get("maximum", 100)), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "array":
        count = max(int(schema.get("minItems", 2)), 1)
        items = schema.get("items") or {"type": "string"}
        return [_value_from_schema(items, root, rng, subject, _subtag(tag, i), name) for i in range(count)]
    if kind == "object":
        properties = schema.get("properties")
        if properties:
            return {key: _value_from_schema(sub, root, rng, subject, tag, key) for key, sub in properties.items()}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return {f"key{i}": _value_from_schema(extra, root, rng, subject, tag, name) for i in range(1, 3)}
        return {}
    return _text_value(name, subject, tag)


def _subtag(tag: str, index: int) -> str:
    return hashlib.sha256(f"{tag}/{index}".encode()).hexdigest()


def _text_value(name: str, subject: str, tag: str) -> str:
    if name in ("value", "answer", "response", "output"):
        return _sentence(subject, tag)
    return f'{name.capitalize()} about "{subject}" ({tag[:8]}).'


def arguments_for(schema: dict[str, Any], conversation: list[Message], choice: int = 0) -> dict[str, Any]:
    """Deterministic tool-call arguments that satisfy a function's JSON-schema `parameters`."""
    tag = digest(conversation, choice)
    value = _value_from_schema(schema, schema, random.Random(tag), _subject(conversation), tag, "value")
    return value if isinstance(value, dict) else {"value": value}


def embedding_of(text: str, dimensions: int = 8) -> list[float]:
    """A deterministic unit vector for `text`: equal texts get equal vectors, different texts different ones."""
    values, counter = [], 0
    while len(values) < dimensions:
        block = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    values = values[:dimensions]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]
