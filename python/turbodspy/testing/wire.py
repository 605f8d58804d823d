"""Wire formats of the local LLM server: reading requests and shaping responses as the real providers do.

Covers OpenAI chat completions, legacy completions, the Responses API and embeddings, Anthropic messages, Gemini
generateContent and Ollama chat, generate and embed, each as JSON or as its streaming form (SSE or NDJSON).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from turbodspy.testing.answers import Message, count_tokens, split_for_stream

API_CHAT = "chat"
API_COMPLETIONS = "completions"
API_RESPONSES = "responses"
API_ANTHROPIC = "anthropic"
API_OLLAMA_CHAT = "ollama_chat"
API_OLLAMA_GENERATE = "ollama_generate"
API_EMBEDDINGS = "embeddings"
API_GEMINI = "gemini"
API_GEMINI_STREAM = "gemini_stream"


class BadRequest(ValueError):
    """The request body is not what the endpoint expects; answered with HTTP 400."""


@dataclass
class Ask:
    """What a generation request asks for, independent of its wire format."""

    api: str
    model: str
    conversations: list[list[Message]]
    n: int = 1
    stream: bool = False
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    json_schema: dict[str, Any] | None = None
    json_mode: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    include_usage: bool = False
    thinking: bool = False
    forced_tool: dict[str, Any] | None = None
    """`{"name": ..., "parameters": schema}` when `tool_choice` forces one function."""


@dataclass
class Choice:
    """One generated completion."""

    text: str | None
    finish_reason: str = "stop"
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """Normalised: `{"id": str, "name": str, "arguments": dict | str}`."""
    extra: dict[str, Any] = field(default_factory=dict)
    stop_sequence: str | None = None
    """The `stop` string that ended the text, if one did."""


def _text_of(content: Any) -> str:
    """The text of a message content: a string or a list of parts (`text`, `input_text`, `output_text`)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "tool_result":
                texts.append(_text_of(part.get("content")))
        return "\n".join(texts)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    raise BadRequest(f"message content must be a string or a list of parts, got {type(content).__name__}")


def _messages(raw: Any, where: str) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise BadRequest(f"'{where}' must be a non-empty list of messages")
    out = []
    for m in raw:
        if not isinstance(m, dict):
            raise BadRequest(f"each item of '{where}' must be an object with 'role' and 'content'")
        role = str(m.get("role") or m.get("type") or "user")
        if role == "developer":
            role = "system"
        out.append((role, _text_of(m.get("content"))))
    return out


def _positive_int(body: dict, *keys: str) -> int | None:
    for key in keys:
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadRequest(f"'{key}' must be a positive integer, got {value!r}")
            return value
    return None


def _count(body: dict, key: str) -> int:
    value = body.get(key)
    if value is None or value is False or value is True:
        return 0
    if not isinstance(value, int) or value < 0:
        raise BadRequest(f"'{key}' must be a non-negative integer, got {value!r}")
    return value


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise BadRequest(f"'stop' must be a string or a list of strings, got {value!r}")


def _openai_response_format(ask: Ask, fmt: Any) -> None:
    if not isinstance(fmt, dict):
        return
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt
        ask.json_schema = spec.get("schema") or {"type": "object"}
    elif fmt.get("type") == "json_object":
        ask.json_mode = True


def _forced_tool(tools: Any, choice: Any) -> dict[str, Any] | None:
    """The function a request forces with `tool_choice` ("required" with one tool, or a named function)."""
    if not isinstance(tools, list) or not tools:
        return None
    specs = []
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        schema = fn.get("parameters") or fn.get("input_schema") or {"type": "object"}
        specs.append({"name": fn.get("name", "tool"), "parameters": schema})
    if choice in ("required", "any") or (isinstance(choice, dict) and choice.get("type") in ("any",)):
        return specs[0]
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        return next((s for s in specs if s["name"] == name), None)
    return None


def parse(api: str, body: Any, path: str = "") -> Ask:
    """Read a generation request body of the given API (Gemini names the model in the `path`)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if api in (API_GEMINI, API_GEMINI_STREAM):
        return _parse_gemini(api, body, path)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string")
    stream = bool(body.get("stream", api in (API_OLLAMA_CHAT, API_OLLAMA_GENERATE)))
    ask = Ask(api=api, model=model, conversations=[], stream=stream)

    if api == API_CHAT:
        ask.conversations = [_messages(body.get("messages"), "messages")]
        ask.n = _positive_int(body, "n") or 1
        ask.max_tokens = _positive_int(body, "max_completion_tokens", "max_tokens")
        ask.stop = _stops(body.get("stop"))
        _openai_response_format(ask, body.get("response_format"))
        ask.logprobs = bool(body.get("logprobs"))
        ask.top_logprobs = _count(body, "top_logprobs")
        ask.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        ask.forced_tool = _forced_tool(body.get("tools"), body.get("tool_choice"))
    elif api == API_COMPLETIONS:
        prompt = body.get("prompt")
        prompts = prompt if isinstance(prompt, list) else [prompt]
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("'prompt' must be a string or a list of strings")
        ask.conversations = [[("user", p)] for p in prompts]
        ask.n = _positive_int(body, "n") or 1
        ask.max_tokens = _positive_int(body, "max_tokens")
        ask.stop = _stops(body.get("stop"))
        ask.logprobs = body.get("logprobs") is not None
        ask.top_logprobs = _count(body, "logprobs")
        ask.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    elif api == API_RESPONSES:
        raw = body.get("input")
        conversation: list[Message] = []
        if isinstance(body.get("instructions"), str):
            conversation.append(("system", body["instructions"]))
        if isinstance(raw, str):
            conversation.append(("user", raw))
        else:
            conversation.extend(_messages(raw, "input"))
        ask.conversations = [conversation]
        ask.max_tokens = _positive_int(body, "max_output_tokens")
        fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
        _openai_response_format(ask, fmt)
        ask.thinking = isinstance(body.get("reasoning"), dict) and bool(body["reasoning"].get("summary"))
        ask.forced_tool = _forced_tool(body.get("tools"), body.get("tool_choice"))
    elif api == API_ANTHROPIC:
        conversation = []
        system = body.get("system")
        if system:
            conversation.append(("system", _text_of(system)))
        conversation.extend(_messages(body.get("messages"), "messages"))
        ask.conversations = [conversation]
        ask.max_tokens = _positive_int(body, "max_tokens")
        if ask.max_tokens is None:
            raise BadRequest("max_tokens: Field required")
        ask.stop = _stops(body.get("stop_sequences"))
        thinking = body.get("thinking")
        ask.thinking = isinstance(thinking, dict) and thinking.get("type") == "enabled"
        ask.forced_tool = _forced_tool(body.get("tools"), body.get("tool_choice"))
        fmt = body.get("output_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            ask.json_schema = fmt.get("schema") or {"type": "object"}
    else:
        if api == API_OLLAMA_CHAT:
            ask.conversations = [_messages(body.get("messages"), "messages")]
        else:
            conversation = [("system", body["system"])] if isinstance(body.get("system"), str) else []
            if not isinstance(body.get("prompt"), str):
                raise BadRequest("'prompt' must be a string")
            ask.conversations = [[*conversation, ("user", body["prompt"])]]
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        ask.max_tokens = _positive_int(options, "num_predict")
        ask.stop = _stops(options.get("stop"))
        fmt = body.get("format")
        if fmt == "json":
            ask.json_mode = True
        elif isinstance(fmt, dict):
            ask.json_schema = fmt
        ask.thinking = bool(body.get("think"))
        ask.forced_tool = None
    return ask


def _parse_gemini(api: str, body: dict[str, Any], path: str) -> Ask:
    model = path.rsplit("/models/", 1)[-1].split(":", 1)[0]
    ask = Ask(api=api, model=model, conversations=[], stream=api == API_GEMINI_STREAM)
    conversation: list[Message] = []
    system = body.get("system_instruction") or body.get("systemInstruction")
    if isinstance(system, dict):
        conversation.append(("system", _text_of(system.get("parts"))))
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("'contents' must be a non-empty list")
    for item in contents:
        if not isinstance(item, dict):
            raise BadRequest("each item of 'contents' must be an object with 'role' and 'parts'")
        role = "assistant" if item.get("role") == "model" else str(item.get("role") or "user")
        conversation.append((role, _text_of(item.get("parts"))))
    ask.conversations = [conversation]
    config = body.get("generationConfig") or body.get("generation_config") or {}
    ask.n = _positive_int(config, "candidateCount", "candidate_count") or 1
    ask.max_tokens = _positive_int(config, "maxOutputTokens", "max_output_tokens")
    ask.stop = _stops(config.get("stopSequences") or config.get("stop_sequences"))
    if config.get("responseMimeType", config.get("response_mime_type")) == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema") or config.get("response_schema")
        if isinstance(schema, dict):
            ask.json_schema = _gemini_schema(schema)
        else:
            ask.json_mode = True
    thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
    ask.thinking = bool(thinking.get("includeThoughts") or thinking.get("include_thoughts"))
    return ask


def _gemini_schema(schema: Any) -> Any:
    """Gemini's OpenAPI-style schema (upper-case `type`s) as JSON schema."""
    if isinstance(schema, dict):
        out = {k: _gemini_schema(v) for k, v in schema.items()}
        if isinstance(out.get("type"), str):
            out["type"] = out["type"].lower()
        return out
    if isinstance(schema, list):
        return [_gemini_schema(v) for v in schema]
    return schema


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _arguments_dict(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return {}
    return arguments


def _token_logprobs(text: str, top: int) -> list[dict[str, Any]]:
    out = []
    for i, piece in enumerate(split_for_stream(text)):
        logprob = -round(0.01 * ((i % 7) + 1), 4)
        alternatives = [
            {"token": piece, "logprob": logprob, "bytes": list(piece.encode())},
            *[{"token": f" alt{k}", "logprob": logprob - k, "bytes": list(f" alt{k}".encode())} for k in range(1, top)],
        ]
        out.append(
            {"token": piece, "logprob": logprob, "bytes": list(piece.encode()), "top_logprobs": alternatives[:top]}
        )
    return out


def usage_of(ask: Ask, choices: list[Choice]) -> tuple[int, int]:
    """(prompt tokens, completion tokens) for a request and its choices."""
    prompt = sum(count_tokens(text) + 3 for conv in ask.conversations for _, text in conv)
    completion = 0
    for c in choices:
        completion += count_tokens(c.text or "") + count_tokens(c.reasoning or "")
        completion += sum(count_tokens(_arguments_text(t["arguments"])) + 5 for t in c.tool_calls)
    return prompt, max(completion, 1 if choices else 0)


def _openai_usage(prompt: int, completion: int, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_tool_calls(choice: Choice) -> list[dict[str, Any]]:
    return [
        {
            "id": t["id"],
            "type": "function",
            "function": {"name": t["name"], "arguments": _arguments_text(t["arguments"])},
        }
        for t in choice.tool_calls
    ]


def render(ask: Ask, choices: list[Choice]) -> dict[str, Any]:
    """The non-streaming JSON response body."""
    prompt_tokens, completion_tokens = usage_of(ask, choices)
    created = int(time.time())
    reasoning_tokens = sum(count_tokens(c.reasoning or "") for c in choices)
    if ask.api == API_CHAT:
        out_choices = []
        for i, c in enumerate(choices):
            message: dict[str, Any] = {"role": "assistant", "content": c.text, "refusal": None, "annotations": []}
            if c.tool_calls:
                message["tool_calls"] = _openai_tool_calls(c)
            if c.reasoning is not None:
                message["reasoning_content"] = c.reasoning
            message.update(c.extra)
            logprobs = (
                {"content": _token_logprobs(c.text or "", ask.top_logprobs), "refusal": None} if ask.logprobs else None
            )
            out_choices.append({"index": i, "message": message, "logprobs": logprobs, "finish_reason": c.finish_reason})
        return {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": created,
            "model": ask.model,
            "choices": out_choices,
            "usage": _openai_usage(prompt_tokens, completion_tokens, reasoning_tokens),
            "service_tier": "default",
            "system_fingerprint": "fp_turbodspy_local",
        }
    if ask.api == API_COMPLETIONS:
        out_choices = []
        for i, c in enumerate(choices):
            logprobs = None
            if ask.logprobs:
                entries = _token_logprobs(c.text or "", max(ask.top_logprobs, 1))
                offsets, position = [], 0
                for e in entries:
                    offsets.append(position)
                    position += len(e["token"])
                logprobs = {
                    "tokens": [e["token"] for e in entries],
                    "token_logprobs": [e["logprob"] for e in entries],
                    "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
                    "text_offset": offsets,
                }
            out_choices.append(
                {"text": c.text or "", "index": i, "logprobs": logprobs, "finish_reason": c.finish_reason}
            )
        return {
            "id": _new_id("cmpl-"),
            "object": "text_completion",
            "created": created,
            "model": ask.model,
            "choices": out_choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_turbodspy_local",
        }
    if ask.api == API_RESPONSES:
        return _responses_object(ask, choices[0], created, prompt_tokens, completion_tokens, reasoning_tokens)
    if ask.api == API_ANTHROPIC:
        return _anthropic_message(ask, choices[0], prompt_tokens, completion_tokens)
    if ask.api in (API_GEMINI, API_GEMINI_STREAM):
        return _gemini_response(ask, choices, prompt_tokens, completion_tokens)
    return _ollama_final(ask, choices[0], prompt_tokens, completion_tokens, include_content=True)


def _responses_output(choice: Choice) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if choice.reasoning is not None:
        output.append(
            {
                "id": _new_id("rs_"),
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": choice.reasoning}],
            }
        )
    for t in choice.tool_calls:
        output.append(
            {
                "id": _new_id("fc_"),
                "type": "function_call",
                "status": "completed",
                "call_id": t["id"],
                "name": t["name"],
                "arguments": _arguments_text(t["arguments"]),
            }
        )
    if choice.text is not None:
        output.append(
            {
                "id": _new_id("msg_"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": choice.text, "annotations": [], "logprobs": []}],
            }
        )
    return output


def _responses_object(
    ask: Ask,
    choice: Choice,
    created: int,
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int,
    status: str = "completed",
) -> dict[str, Any]:
    truncated = choice.finish_reason == "length"
    return {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": created,
        "status": "incomplete" if truncated and status == "completed" else status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "instructions": None,
        "max_output_tokens": ask.max_tokens,
        "model": ask.model,
        "output": _responses_output(choice) if status == "completed" else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if status == "completed"
        else None,
        "user": None,
        "metadata": {},
    }


_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _anthropic_content(choice: Choice) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if choice.reasoning is not None:
        content.append({"type": "thinking", "thinking": choice.reasoning, "signature": "local-signature"})
    if choice.text is not None:
        content.append({"type": "text", "text": choice.text})
    for t in choice.tool_calls:
        content.append({"type": "tool_use", "id": t["id"], "name": t["name"], "input": _arguments_dict(t["arguments"])})
    return content


def _anthropic_message(ask: Ask, choice: Choice, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    stop_reason = _ANTHROPIC_STOP.get(choice.finish_reason, choice.finish_reason)
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": ask.model,
        "content": _anthropic_content(choice),
        "stop_reason": "stop_sequence" if choice.stop_sequence else stop_reason,
        "stop_sequence": choice.stop_sequence,
        "usage": {
            "input_tokens": prompt_tokens,
            "output_tokens": completion_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _ollama_final(
    ask: Ask, choice: Choice, prompt_tokens: int, completion_tokens: int, include_content: bool
) -> dict[str, Any]:
    created_at = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    out: dict[str, Any] = {"model": ask.model, "created_at": created_at}
    text = (choice.text or "") if include_content else ""
    if ask.api == API_OLLAMA_CHAT:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if include_content and choice.reasoning is not None:
            message["thinking"] = choice.reasoning
        if include_content and choice.tool_calls:
            message["tool_calls"] = [
                {"function": {"name": t["name"], "arguments": _arguments_dict(t["arguments"])}}
                for t in choice.tool_calls
            ]
        out["message"] = message
    else:
        out["response"] = text
        if include_content and choice.reasoning is not None:
            out["thinking"] = choice.reasoning
    out.update(
        {
            "done": True,
            "done_reason": "length" if choice.finish_reason == "length" else "stop",
            "total_duration": 1_000_000,
            "load_duration": 1_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 100_000,
            "eval_count": completion_tokens,
            "eval_duration": 800_000,
        }
    )
    return out


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def render_stream(ask: Ask, choices: list[Choice]) -> Iterator[bytes]:
    """The streaming response body, piece by piece (SSE for OpenAI and Anthropic, NDJSON for Ollama)."""
    if ask.api == API_CHAT:
        yield from _chat_stream(ask, choices)
    elif ask.api == API_COMPLETIONS:
        yield from _completions_stream(ask, choices)
    elif ask.api == API_RESPONSES:
        yield from _responses_stream(ask, choices[0])
    elif ask.api == API_ANTHROPIC:
        yield from _anthropic_stream(ask, choices[0])
    elif ask.api in (API_GEMINI, API_GEMINI_STREAM):
        yield from _gemini_stream(ask, choices)
    else:
        yield from _ollama_stream(ask, choices[0])


def _chat_stream(ask: Ask, choices: list[Choice]) -> Iterator[bytes]:
    base = {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": ask.model,
        "service_tier": "default",
        "system_fingerprint": "fp_turbodspy_local",
    }
    usage_field = {"usage": None} if ask.include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return _sse({**base, "choices": [choice], **usage_field})

    for i, c in enumerate(choices):
        yield chunk(i, {"role": "assistant", "content": "", "refusal": None})
        if c.reasoning is not None:
            for piece in split_for_stream(c.reasoning):
                yield chunk(i, {"reasoning_content": piece})
        for piece in split_for_stream(c.text or ""):
            logprobs = {"content": _token_logprobs(piece, ask.top_logprobs), "refusal": None} if ask.logprobs else None
            yield chunk(i, {"content": piece}, logprobs=logprobs)
        for k, call in enumerate(_openai_tool_calls(c)):
            yield chunk(i, {"tool_calls": [{"index": k, **call}]})
    for i, c in enumerate(choices):
        yield chunk(i, {}, c.finish_reason)
    if ask.include_usage:
        prompt_tokens, completion_tokens = usage_of(ask, choices)
        reasoning = sum(count_tokens(c.reasoning or "") for c in choices)
        yield _sse({**base, "choices": [], "usage": _openai_usage(prompt_tokens, completion_tokens, reasoning)})
    yield _sse("[DONE]")


def _completions_stream(ask: Ask, choices: list[Choice]) -> Iterator[bytes]:
    base = {"id": _new_id("cmpl-"), "object": "text_completion", "created": int(time.time()), "model": ask.model}
    for i, c in enumerate(choices):
        for piece in split_for_stream(c.text or ""):
            yield _sse({**base, "choices": [{"text": piece, "index": i, "logprobs": None, "finish_reason": None}]})
        yield _sse({**base, "choices": [{"text": "", "index": i, "logprobs": None, "finish_reason": c.finish_reason}]})
    if ask.include_usage:
        prompt_tokens, completion_tokens = usage_of(ask, choices)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        yield _sse({**base, "choices": [], "usage": usage})
    yield _sse("[DONE]")


def _responses_stream(ask: Ask, choice: Choice) -> Iterator[bytes]:
    prompt_tokens, completion_tokens = usage_of(ask, [choice])
    created = int(time.time())
    final = _responses_object(
        ask, choice, created, prompt_tokens, completion_tokens, count_tokens(choice.reasoning or "")
    )
    pending = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    seq = 0

    def event(kind: str, **payload: Any) -> bytes:
        nonlocal seq
        seq += 1
        return _sse({"type": kind, "sequence_number": seq - 1, **payload}, event=kind)

    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    for index, item in enumerate(final["output"]):
        if item["type"] != "message":
            yield event("response.output_item.added", output_index=index, item=item)
            yield event("response.output_item.done", output_index=index, item=item)
            continue
        text = item["content"][0]["text"]
        yield event(
            "response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []}
        )
        empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event(
            "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=empty_part
        )
        for piece in split_for_stream(text):
            yield event(
                "response.output_text.delta",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        yield event(
            "response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text, logprobs=[]
        )
        yield event(
            "response.content_part.done",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            part=item["content"][0],
        )
        yield event("response.output_item.done", output_index=index, item=item)
    kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
    yield event(kind, response=final)


def _anthropic_stream(ask: Ask, choice: Choice) -> Iterator[bytes]:
    prompt_tokens, completion_tokens = usage_of(ask, [choice])
    message = _anthropic_message(ask, choice, prompt_tokens, completion_tokens)
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    yield _sse({"type": "message_start", "message": start}, event="message_start")
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening, deltas = (
                {"type": "text", "text": ""},
                [{"type": "text_delta", "text": p} for p in split_for_stream(block["text"])],
            )
        elif block["type"] == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in split_for_stream(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            opening = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        yield _sse({"type": "content_block_start", "index": index, "content_block": opening}, "content_block_start")
        for delta in deltas:
            yield _sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": index}, "content_block_stop")
    yield _sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
            "usage": {"output_tokens": completion_tokens},
        },
        "message_delta",
    )
    yield _sse({"type": "message_stop"}, "message_stop")


def _ollama_stream(ask: Ask, choice: Choice) -> Iterator[bytes]:
    prompt_tokens, completion_tokens = usage_of(ask, [choice])
    created_at = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    for piece in split_for_stream(choice.text or ""):
        if ask.api == API_OLLAMA_CHAT:
            line = {"model": ask.model, "created_at": created_at, "message": {"role": "assistant", "content": piece}}
        else:
            line = {"model": ask.model, "created_at": created_at, "response": piece}
        yield (json.dumps({**line, "done": False}) + "\n").encode()
    final = _ollama_final(ask, choice, prompt_tokens, completion_tokens, include_content=False)
    if choice.tool_calls and ask.api == API_OLLAMA_CHAT:
        final["message"]["tool_calls"] = [
            {"function": {"name": t["name"], "arguments": _arguments_dict(t["arguments"])}} for t in choice.tool_calls
        ]
    yield (json.dumps(final) + "\n").encode()


_GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}


def _gemini_parts(choice: Choice, text: str | None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if choice.reasoning is not None:
        parts.append({"text": choice.reasoning, "thought": True})
    if text is not None:
        parts.append({"text": text})
    for t in choice.tool_calls:
        parts.append({"functionCall": {"name": t["name"], "args": _arguments_dict(t["arguments"])}})
    return parts


def _gemini_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": completion_tokens,
        "totalTokenCount": prompt_tokens + completion_tokens,
    }


def _gemini_response(ask: Ask, choices: list[Choice], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    candidates = [
        {
            "content": {"parts": _gemini_parts(c, c.text), "role": "model"},
            "finishReason": _GEMINI_FINISH.get(c.finish_reason, "STOP"),
            "index": i,
        }
        for i, c in enumerate(choices)
    ]
    return {
        "candidates": candidates,
        "usageMetadata": _gemini_usage(prompt_tokens, completion_tokens),
        "modelVersion": ask.model,
        "responseId": uuid.uuid4().hex[:22],
    }


def _gemini_stream(ask: Ask, choices: list[Choice]) -> Iterator[bytes]:
    """Gemini's `alt=sse` stream: each event a whole response holding the next piece of text, no [DONE]."""
    prompt_tokens, completion_tokens = usage_of(ask, choices)
    choice = choices[0]
    pieces = split_for_stream(choice.text or "") or [""]
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        candidate: dict[str, Any] = {
            "content": {"parts": _gemini_parts(choice if i == 0 else Choice(text=None), piece), "role": "model"},
            "index": 0,
        }
        if last:
            candidate["finishReason"] = _GEMINI_FINISH.get(choice.finish_reason, "STOP")
        event = {"candidates": [candidate], "modelVersion": ask.model}
        if last:
            event["usageMetadata"] = _gemini_usage(prompt_tokens, completion_tokens)
        yield _sse(event)


_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}


def error_body(api: str, status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
    """An error body shaped as the API's provider shapes it."""
    if api in (API_GEMINI, API_GEMINI_STREAM):
        return {"error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}}
    if api == API_ANTHROPIC:
        return {"type": "error", "error": {"type": kind, "message": message}}
    if api in (API_OLLAMA_CHAT, API_OLLAMA_GENERATE):
        return {"error": message}
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def parse_embedding(body: Any) -> tuple[str, list[str], int]:
    """(model, input texts, dimensions) of an embeddings request."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise BadRequest("'model' is required and must be a non-empty string")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("'input' must be a string or a non-empty list of strings")
    dimensions = _positive_int(body, "dimensions") or 8
    return body["model"], texts, dimensions


def render_embeddings(ollama: bool, model: str, texts: list[str], vectors: list[list[float]]) -> dict[str, Any]:
    """An embeddings response body (OpenAI's, or Ollama's `/api/embed`)."""
    tokens = sum(count_tokens(t) for t in texts)
    if ollama:
        return {"model": model, "embeddings": vectors, "total_duration": 1_000_000, "prompt_eval_count": tokens}
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
