"""A real local LLM server on 127.0.0.1 for offline tests: OpenAI, Anthropic, Gemini and Ollama wire formats.

`LocalLLMServer` runs a threaded HTTP/1.1 server (keep-alive, chunked streaming) in a background thread,
answers deterministically (see `turbodspy.testing.answers`), records every request, and injects latency
and faults on demand.
"""

from __future__ import annotations

import inspect
import json
import math
import socket
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from turbodspy.testing import wire
from turbodspy.testing.answers import (
    Message,
    Reply,
    arguments_for,
    compose,
    count_tokens,
    embedding_of,
    reasoning_for,
    truncate_tokens,
)

ScriptEntry = str | Reply
ScriptFunction = Callable[..., "str | Reply | None"]

FAULT_KINDS = ("429", "500", "502", "503", "401", "400", "404", "drop", "malformed", "truncated")
"""What `LocalLLMServer.fail_next` can inject: HTTP errors (429 carries `Retry-After`; 400 is a context-length
error; 401 a bad API key; 404 an unknown model), `drop` (close the connection without answering),
`malformed` (HTTP 200 whose body is not JSON) and `truncated` (the real answer, or stream, cut off half-way
by a closed connection)."""

_FAULT_ALIASES = {
    "rate_limit": "429",
    "server_error": "500",
    "bad_gateway": "502",
    "overloaded": "503",
    "auth": "401",
    "context_length": "400",
    "model_not_found": "404",
}

_GENERATION_ROUTES = (
    ("/embeddings", wire.API_EMBEDDINGS),
    ("/api/embed", wire.API_EMBEDDINGS),
    ("/chat/completions", wire.API_CHAT),
    ("/completions", wire.API_COMPLETIONS),
    ("/responses", wire.API_RESPONSES),
    ("/messages", wire.API_ANTHROPIC),
    ("/api/chat", wire.API_OLLAMA_CHAT),
    ("/api/generate", wire.API_OLLAMA_GENERATE),
)


def _generation_api(path: str) -> str | None:
    if path.endswith(":generateContent"):
        return wire.API_GEMINI
    if path.endswith(":streamGenerateContent"):
        return wire.API_GEMINI_STREAM
    return next((api for suffix, api in _GENERATION_ROUTES if path.endswith(suffix)), None)


class Headers(Mapping[str, str]):
    """Request headers with case-insensitive lookup; iterates lower-cased names."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items: dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            self._items[key] = f"{self._items[key]}, {value}" if key in self._items else value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        shown = {
            k: ("<redacted>" if k in ("authorization", "x-api-key", "api-key") else v) for k, v in self._items.items()
        }
        return f"Headers({shown!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as it arrived."""

    method: str
    path: str
    """The path without the query string, e.g. `/v1/chat/completions`."""
    query: str
    headers: Headers
    raw_body: bytes
    body: Any
    """The parsed JSON body, or None when there was none or it was not JSON."""
    request_id: str
    """The `x-request-id` the server answered with."""
    timestamp: float

    @property
    def model(self) -> str | None:
        """The `model` of the JSON body, when there is one."""
        return self.body.get("model") if isinstance(self.body, dict) else None


@dataclass(frozen=True)
class _Fault:
    kind: str
    retry_after: float | None
    message: str | None


class LocalLLMServer:
    """A local HTTP server that speaks OpenAI, Anthropic, Gemini and Ollama wire formats, answering deterministically.

    Use as a context manager (`with LocalLLMServer() as server:`) or call `start()`/`stop()`. Point LiteLLM at
    `server.openai_base` for `openai/...` models, at `server.url` for `anthropic/...`, `gemini/...`,
    `ollama_chat/...` and `azure/...`.

    `api_key`: when set, requests must carry it (`Authorization: Bearer ...` or `x-api-key`), else HTTP 401.
    `models`: when set, only these model names are served, others get HTTP 404.
    `latency`: seconds to wait before answering each generation request.
    `context_window`: when set, prompts longer than this many tokens get a context-length error.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        models: Iterable[str] | None = None,
        latency: float = 0.0,
        context_window: int | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._generation = 0
        self._faults: deque[_Fault] = deque()
        self._script: deque[ScriptEntry] = deque()
        self._script_fn: ScriptFunction | None = None
        self._script_fn_wants_choice = False
        self._initial = {
            "api_key": api_key,
            "models": tuple(models) if models is not None else None,
            "latency": latency,
            "context_window": context_window,
        }
        self.api_key: str | None = api_key
        self.models: tuple[str, ...] | None = self._initial["models"]
        self.latency: float = latency
        self.context_window: int | None = context_window
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> LocalLLMServer:
        """Bind the port and serve in a background thread. Returns self."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self._host, self._requested_port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="turbodspy-local-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and free the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_all_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LocalLLMServer is not running: call start() or use it as a context manager")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`: the api_base for `anthropic/...` and `ollama_chat/...` models."""
        return f"http://{self._host}:{self.port}"

    @property
    def openai_base(self) -> str:
        """`http://127.0.0.1:PORT/v1`: the api_base for `openai/...` models."""
        return f"{self.url}/v1"

    # Recorded requests

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request; raises LookupError when there was none."""
        with self._lock:
            if not self._requests:
                raise LookupError("the local LLM server has received no request yet")
            return self._requests[-1]

    @property
    def model_requests(self) -> list[RecordedRequest]:
        """The recorded requests that asked for a completion or embedding (not model listings or info)."""
        return [r for r in self.requests if r.method == "POST" and _generation_api(r.path) is not None]

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Forget requests, pending faults and scripted answers; restore the constructor's settings."""
        with self._lock:
            self._generation += 1
            self._requests.clear()
            self._faults.clear()
            self._script.clear()
            self._script_fn = None
        self.api_key = self._initial["api_key"]
        self.models = self._initial["models"]
        self.latency = self._initial["latency"]
        self.context_window = self._initial["context_window"]

    # Behaviour control

    def script(self, answers: Iterable[ScriptEntry] | ScriptFunction) -> None:
        """Force the next completions.

        With a list, each completion (each of the `n` choices) takes the next entry, a string or a `Reply`;
        once the list runs out the server answers deterministically again. With a callable
        `fn(request)` or `fn(request, choice_index)` returning a string, a `Reply` or None (None = the
        deterministic answer), every completion asks it until `reset()` or another `script(...)`.
        """
        if callable(answers):
            params = [
                p
                for p in inspect.signature(answers).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            ]
            with self._lock:
                self._script.clear()
                self._script_fn = answers
                self._script_fn_wants_choice = len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
            return
        if isinstance(answers, str | Reply):
            raise TypeError("script() takes a list of answers or a callable; wrap a single answer in a list")
        entries = list(answers)
        for entry in entries:
            if not isinstance(entry, str | Reply):
                raise TypeError(f"scripted answers must be str or Reply, got {type(entry).__name__}")
        with self._lock:
            self._script_fn = None
            self._script.extend(entries)

    def fail_next(
        self, kind: str | int, count: int = 1, *, retry_after: float | None = None, message: str | None = None
    ) -> None:
        """Make the next `count` generation requests fail as `kind` (one of `FAULT_KINDS`).

        `retry_after` (seconds) sets the `Retry-After` header of 429 and 503 answers (429 defaults to 0).
        """
        name = _FAULT_ALIASES.get(str(kind), str(kind))
        if name not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}: use one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._lock:
            self._faults.extend(_Fault(name, retry_after, message) for _ in range(count))

    @property
    def pending_faults(self) -> int:
        """How many injected faults have not fired yet."""
        with self._lock:
            return len(self._faults)

    # Used by the handler

    def _record(self, request: RecordedRequest) -> int:
        """Store a request; returns the current reset generation, so stale requests can be told apart."""
        with self._lock:
            self._requests.append(request)
            return self._generation

    def _is_stale(self, generation: int) -> bool:
        with self._lock:
            return generation != self._generation

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _scripted(self, request: RecordedRequest, choice: int) -> str | Reply | None:
        with self._lock:
            fn, wants_choice = self._script_fn, self._script_fn_wants_choice
            if fn is None:
                return self._script.popleft() if self._script else None
        answer = fn(request, choice) if wants_choice else fn(request)
        if answer is not None and not isinstance(answer, str | Reply):
            raise TypeError(f"a script function must return str, Reply or None, got {type(answer).__name__}")
        return answer

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return f"LocalLLMServer({where})"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    owner: LocalLLMServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(conn)

    def close_all_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections so they end."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers go out in small writes; with Nagle's algorithm each keep-alive reply waits ~40 ms for an ACK.
    disable_nagle_algorithm = True
    server_version = "turbodspy-local-llm/1"
    # Idle keep-alive connections end after this long; clients reconnect transparently.
    timeout = 300
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm meets the client's
        # delayed ACK and every response waits ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # Request intake

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        owner = self.server.owner
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        path, _, query = self.path.partition("?")
        path = "/" + "/".join(segment for segment in path.split("/") if segment)
        self._request_id = f"req_{uuid.uuid4().hex}"
        record = RecordedRequest(
            method=self.command,
            path=path,
            query=query,
            headers=Headers(self.headers.items()),
            raw_body=raw,
            body=body,
            request_id=self._request_id,
            timestamp=time.time(),
        )
        self._generation = owner._record(record)
        self._api = wire.API_CHAT
        self._started = False
        self._truncate = False

        try:
            api = _generation_api(path) if self.command == "POST" else None
            if api is not None:
                self._api = api
                if raw and body is None:
                    self._error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
                elif api == wire.API_EMBEDDINGS:
                    self._embed(owner, record)
                else:
                    self._generate(owner, record, api)
            else:
                self._serve_info(owner, path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            # A fault of this server (or of a user's script function): answer it as a 500 that says what
            # failed rather than dropping the connection; mid-stream there is nothing left to do but close.
            if self._started:
                self.close_connection = True
            else:
                self._error(500, f"the local LLM server failed: {type(exc).__name__}: {exc}", "server_error")

    def _serve_info(self, owner: LocalLLMServer, path: str) -> None:
        models = list(owner.models) if owner.models is not None else ["test-model"]
        if self.command == "GET" and path.endswith("/models"):
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "turbodspy"} for m in models]
            self._json(200, {"object": "list", "data": data})
        elif self.command == "GET" and "/models/" in path:
            model = path.split("/models/", 1)[1]
            if owner.models is not None and model not in owner.models:
                self._error(404, f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found")
            else:
                self._json(200, {"id": model, "object": "model", "created": 1700000000, "owned_by": "turbodspy"})
        elif self.command == "GET" and path.endswith("/api/tags"):
            names = list(owner.models) if owner.models is not None else ["llama3.2:latest"]
            self._json(200, {"models": [_ollama_model(name) for name in names]})
        elif self.command == "POST" and path.endswith("/api/show"):
            self._json(200, _ollama_show())
        elif self.command == "GET" and path.endswith("/api/version"):
            self._json(200, {"version": "0.6.0"})
        elif self.command == "GET" and path in ("/", "/health"):
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"Unknown request URL: {self.command} {path}.", "invalid_request_error", "unknown_url")

    # Generation

    def _admit(self, owner: LocalLLMServer, record: RecordedRequest) -> bool:
        """Apply latency, the API-key check and any injected fault; False when the request was answered."""
        if owner.latency > 0:
            time.sleep(owner.latency)
        # A request still waiting when the server was reset belongs to a finished test: it is answered
        # plainly and must not take the faults or scripted answers meant for the next one.
        self._stale = owner._is_stale(self._generation)
        if owner.api_key is not None and not self._authorised(owner.api_key, record.headers, record.query):
            self._fault_response(_Fault("401", None, None), record)
            return False
        fault = None if self._stale else owner._take_fault()
        self._truncate = fault is not None and fault.kind == "truncated"
        if fault is not None and not self._truncate:
            self._fault_response(fault, record)
            return False
        return True

    def _generate(self, owner: LocalLLMServer, record: RecordedRequest, api: str) -> None:
        if not self._admit(owner, record):
            return
        try:
            ask = wire.parse(api, record.body, record.path)
        except wire.BadRequest as exc:
            self._error(400, str(exc), "invalid_request_error")
            return
        if owner.models is not None and ask.model not in owner.models:
            self._fault_response(_Fault("404", None, None), record)
            return
        if owner.context_window is not None:
            prompt_tokens, _ = wire.usage_of(ask, [])
            if prompt_tokens > owner.context_window:
                self._context_error(prompt_tokens, owner.context_window)
                return
        choices = self._choices(owner, record, ask)
        if ask.stream:
            self._stream(ask, choices)
        else:
            self._json(200, wire.render(ask, choices))

    def _embed(self, owner: LocalLLMServer, record: RecordedRequest) -> None:
        """Deterministic unit vectors, one per input text (OpenAI `/v1/embeddings`, Ollama `/api/embed`)."""
        if not self._admit(owner, record):
            return
        try:
            model, texts, dimensions = wire.parse_embedding(record.body)
        except wire.BadRequest as exc:
            self._error(400, str(exc), "invalid_request_error")
            return
        vectors = [embedding_of(text, dimensions) for text in texts]
        self._json(200, wire.render_embeddings(record.path.endswith("/api/embed"), model, texts, vectors))

    @staticmethod
    def _authorised(expected: str, headers: Headers, query: str = "") -> bool:
        given = headers.get("x-api-key") or headers.get("api-key") or headers.get("x-goog-api-key")
        given = given or dict(urllib.parse.parse_qsl(query)).get("key")
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            given = given or bearer[7:].strip()
        return given == expected

    def _choices(self, owner: LocalLLMServer, record: RecordedRequest, ask: wire.Ask) -> list[wire.Choice]:
        choices = []
        index = 0
        for conversation in ask.conversations:
            for choice_index in range(ask.n):
                scripted = None if self._stale else owner._scripted(record, index)
                reply = Reply(text=scripted) if isinstance(scripted, str) else scripted or Reply()
                choices.append(_build_choice(ask, conversation, choice_index, reply))
                index += 1
        return choices

    # Faults and errors

    def _fault_response(self, fault: _Fault, record: RecordedRequest) -> None:
        kind = fault.kind
        if kind == "drop":
            self._hang_up()
            return
        if kind == "malformed":
            self._send(200, b'{"id": "chatcmpl-broken", "choices": [ this is not JSON', "application/json")
            return
        model = record.model or "unknown"
        headers: dict[str, str] = {}
        if kind in ("429", "503") and (fault.retry_after is not None or kind == "429"):
            seconds = fault.retry_after or 0.0
            headers["retry-after"] = str(math.ceil(seconds))
            headers["retry-after-ms"] = str(int(seconds * 1000))
        if kind == "400":
            self._context_error(None, None, fault.message)
            return
        anthropic = self._api == wire.API_ANTHROPIC
        status, default_message, error_type, code = {
            "429": (
                429,
                "Rate limit reached for requests. Please try again later.",
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
            "500": (500, "The server had an error while processing your request.", "server_error", None),
            "502": (502, "Bad gateway.", "server_error", None),
            "503": (503, "The engine is currently overloaded, please try again later.", "server_error", None),
            "401": (401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
            "404": (
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
        }[kind]
        if anthropic:
            error_type = {
                "429": "rate_limit_error",
                "500": "api_error",
                "502": "api_error",
                "503": "overloaded_error",
                "401": "authentication_error",
                "404": "not_found_error",
            }[kind]
        self._error(status, fault.message or default_message, error_type, code, headers)

    def _context_error(self, tokens: int | None, window: int | None, message: str | None = None) -> None:
        window = window or 8192
        tokens = tokens or window + 1
        if self._api == wire.API_ANTHROPIC:
            text = message or f"prompt is too long: {tokens} tokens > {window} maximum"
            self._error(400, text, "invalid_request_error")
            return
        text = message or (
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{tokens} tokens. Please reduce the length of the messages."
        )
        self._error(400, text, "invalid_request_error", "context_length_exceeded")

    def _error(
        self, status: int, message: str, kind: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self._json(status, wire.error_body(self._api, status, message, kind, code), headers)

    # Output

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _common_headers(self) -> None:
        self.send_header("x-request-id", self._request_id)
        if self._api == wire.API_ANTHROPIC:
            self.send_header("request-id", self._request_id)
        if self.close_connection:
            self.send_header("Connection", "close")

    def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._started = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._common_headers()
        self.end_headers()
        if self._truncate:
            self.wfile.write(payload[: len(payload) // 2])
            self._hang_up()
            return
        self.wfile.write(payload)

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _stream(self, ask: wire.Ask, choices: list[wire.Choice]) -> None:
        ndjson = ask.api in (wire.API_OLLAMA_CHAT, wire.API_OLLAMA_GENERATE)
        self._started = True
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson" if ndjson else "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._common_headers()
        self.end_headers()
        pieces = list(wire.render_stream(ask, choices))
        if self._truncate:
            pieces = pieces[: len(pieces) // 2]
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        if self._truncate:
            self._hang_up()
            return
        self.wfile.write(b"0\r\n\r\n")


def _build_choice(ask: wire.Ask, conversation: list[Message], choice_index: int, reply: Reply) -> wire.Choice:
    """One completion: the scripted reply or the deterministic answer, cut by `stop` and `max_tokens`."""
    text = reply.text
    tool_calls = [
        {"id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}", "name": call["name"], "arguments": call["arguments"]}
        for call in reply.tool_calls or []
    ]
    if text is None and not tool_calls and ask.forced_tool is not None:
        arguments = arguments_for(ask.forced_tool["parameters"], conversation, choice_index)
        tool_calls = [{"id": f"call_{uuid.uuid4().hex[:24]}", "name": ask.forced_tool["name"], "arguments": arguments}]
    elif text is None and not tool_calls:
        text = compose(conversation, choice=choice_index, json_schema=ask.json_schema, json_mode=ask.json_mode)
    reasoning = reply.reasoning_content
    if reasoning is None and ask.thinking:
        reasoning = reasoning_for(conversation, choice_index)
    finish = "tool_calls" if tool_calls else "stop"
    stop_sequence = None
    if text is not None:
        hits = [(text.find(s), s) for s in ask.stop if s and s in text]
        if hits:
            cut, stop_sequence = min(hits)
            text = text[:cut]
        if ask.max_tokens is not None and count_tokens(text) > ask.max_tokens:
            text = truncate_tokens(text, ask.max_tokens)
            finish, stop_sequence = "length", None
    return wire.Choice(
        text=text,
        finish_reason=reply.finish_reason or finish,
        reasoning=reasoning,
        tool_calls=tool_calls,
        extra=dict(reply.extra),
        stop_sequence=stop_sequence,
    )


def _ollama_model(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-01-01T00:00:00Z",
        "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": _ollama_details(),
    }


def _ollama_details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
    }


def _ollama_show() -> dict[str, Any]:
    return {
        "modelfile": "",
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": _ollama_details(),
        "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
        "capabilities": ["completion", "tools"],
    }
