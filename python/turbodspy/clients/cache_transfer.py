"""Moving cache entries in and out: a portable JSON Lines export file, and import of DSPy 3.4.1 disk caches.

DSPy keeps its disk cache in diskcache's SQLite shards with pickled values. Reading them needs pickle, so it
happens only here, in the explicit `cache import-dspy` command, with an unpickler that resolves no real class:
the few response types DSPy stores are replaced by inert stand-ins that only collect field values, and any
other global makes that entry be skipped. Nothing from the file runs.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from turbodspy.clients.cache import kept_outputs
from turbodspy.clients.disk_cache import DiskCache

EXPORT_FORMAT = "turbodspy-cache-export"
EXPORT_VERSION = 1
_KEY = re.compile(r"[0-9a-f]{64}")


class CacheFileError(ValueError):
    """A file given to `cache import` / `import-dspy` is not what the command reads."""


@dataclass
class TransferReport:
    """What an import or export did."""

    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self, verb: str, where: str) -> str:
        parts = [f"{verb} {self.written} entries {where}"]
        if self.skipped:
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            parts.append(f"skipped {sum(self.skipped.values())} ({why})")
        return "; ".join(parts)


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, mode + "b"), encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def export_cache(cache: DiskCache, path: str | Path) -> TransferReport:
    """Writes every entry to `path` as JSON Lines (gzip-compressed if the name ends in `.gz`)."""
    report = TransferReport()
    path = Path(path)
    with _open_text(path, "w") as out:
        out.write(json.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION}) + "\n")
        for key in cache.keys():
            record = cache.peek(key)
            if record is None:
                report.skipped["unreadable"] += 1
                continue
            out.write(json.dumps({"key": key, "record": record}, ensure_ascii=False, separators=(",", ":")) + "\n")
            report.written += 1
    return report


def import_cache(cache: DiskCache, path: str | Path) -> TransferReport:
    """Reads a file written by `export_cache` into `cache`."""
    report = TransferReport()
    path = Path(path)
    with _open_text(path, "r") as f:
        try:
            header = json.loads(f.readline())
        except (ValueError, UnicodeDecodeError, EOFError, OSError):
            header = None
        if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
            raise CacheFileError(f"{path} is not a turbodspy cache export (made by `python -m turbodspy cache export`)")
        if header.get("version") != EXPORT_VERSION:
            raise CacheFileError(
                f"{path} is export format version {header.get('version')!r}; this turbodspy reads {EXPORT_VERSION}"
            )
        for line in f:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                report.skipped["malformed lines"] += 1
                continue
            key, record = entry.get("key") if isinstance(entry, dict) else None, entry.get("record")
            if not isinstance(key, str) or not _KEY.fullmatch(key) or not isinstance(record, dict):
                report.skipped["malformed lines"] += 1
                continue
            cache.put(key, record)
            report.written += 1
    return report


# --- DSPy 3.4.1 disk caches -------------------------------------------------------------------------------------

# The response classes DSPy's LiteLLM path pickles (a ModelResponse tree, text completions, Responses API).
_ALLOWED_TYPES = frozenset(
    {
        ("litellm.types.utils", name)
        for name in (
            "ModelResponse",
            "Choices",
            "Message",
            "Usage",
            "Delta",
            "StreamingChoices",
            "TextCompletionResponse",
            "TextChoices",
            "Logprobs",
            "ChoiceLogprobs",
            "ChatCompletionTokenLogprob",
            "TopLogprob",
            "ChatCompletionMessageToolCall",
            "Function",
            "PromptTokensDetailsWrapper",
            "CompletionTokensDetailsWrapper",
            "CacheCreationTokenDetails",
            "ServerToolUse",
        )
    }
    | {
        ("litellm.types.llms.openai", name)
        for name in ("ResponsesAPIResponse", "ResponseAPIUsage", "OutputTokensDetails", "InputTokensDetails")
    }
)


class _Fields:
    """Stands in for a pickled pydantic response object: keeps its field values, runs nothing."""

    type_name = "object"
    fields: dict[str, Any]
    private: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> _Fields:
        obj = super().__new__(cls)
        obj.fields = {}
        obj.private = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0] if isinstance(state[0], dict) else state[1]
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected state for {self.type_name}")
        values = state.get("__dict__", state) if "__dict__" in state else state
        if isinstance(values, dict):
            self.fields.update(values)
        extra = state.get("__pydantic_extra__")
        if isinstance(extra, dict):
            self.fields.update(extra)
        private = state.get("__pydantic_private__")
        if isinstance(private, dict):
            self.private.update(private)


_STAND_INS: dict[tuple[str, str], type[_Fields]] = {
    allowed: type(allowed[1], (_Fields,), {"type_name": f"{allowed[0]}.{allowed[1]}"}) for allowed in _ALLOWED_TYPES
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        stand_in = _STAND_INS.get((module, name))
        if stand_in is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not a DSPy response type")
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON-native copy of an unpickled value; stand-ins become dicts of their fields."""
    if depth > 64:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, _Fields):
        return {str(k): _plain(v, depth + 1) for k, v in value.fields.items()}
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v, depth + 1) for v in value), key=repr)
    raise ValueError(f"{type(value).__name__} is not data")


def _chat_response_from_outputs(record: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-shaped chat completion built from the `outputs` of a DSPy record that kept no raw response."""
    choices = []
    for index, output in enumerate(record.get("outputs") or []):
        output = output if isinstance(output, dict) else {"text": output}
        message: dict[str, Any] = {"role": "assistant", "content": output.get("text")}
        for name in ("tool_calls", "reasoning_content"):
            if output.get(name) is not None:
                message[name] = output[name]
        choice: dict[str, Any] = {"index": index, "finish_reason": "stop", "message": message}
        if output.get("logprobs") is not None:
            choice["logprobs"] = output["logprobs"]
        choices.append(choice)
    return {
        "object": "chat.completion",
        "model": record.get("response_model"),
        "choices": choices,
        "usage": record.get("usage") or {},
    }


def convert_dspy_value(value: Any) -> dict[str, Any]:
    """Our record for one unpickled DSPy cache value (a `dspy-lm15-result-v1` dict or a LiteLLM response)."""
    if isinstance(value, dict) and value.get("_dspy_format") == "dspy-lm15-result-v1":
        record = _plain(value)
        responses = record.get("responses") or []
        provider = responses[0].get("provider_data") if len(responses) == 1 and isinstance(responses[0], dict) else None
        if isinstance(provider, dict) and ("choices" in provider or "output" in provider):
            response = provider
        elif isinstance(record.get("raw"), dict):
            response = record["raw"]
        else:
            response = _chat_response_from_outputs(record)
        usage = record.get("usage") if isinstance(record.get("usage"), dict) else response.get("usage") or {}
        converted = {
            "cost": record.get("cost"),
            "response_model": response.get("model"),
            "model": record.get("response_model") or response.get("model"),
            "response": response,
            "usage": usage,
        }
        outputs = record.get("outputs")
        if isinstance(outputs, list) and all(isinstance(o, (str, dict)) for o in outputs):
            # What DSPy returned for the call is what a hit returns: kept first, as the LM keeps its own.
            converted = {"outputs": kept_outputs(outputs, response), **converted}
        return converted
    if isinstance(value, _Fields):
        response = _plain(value)
        hidden = value.private.get("_hidden_params")
        cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
        usage = response.get("usage")
        return {
            "response": response,
            "usage": usage if isinstance(usage, dict) else {},
            "cost": cost if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
            "model": response.get("model"),
        }
    raise ValueError(f"a {type(value).__name__} is not a DSPy LM response")


def _shard_databases(directory: Path) -> list[Path]:
    found = sorted(directory.glob("cache.db")) + sorted(directory.glob("*/cache.db"))
    if not found:
        raise CacheFileError(
            f"{directory} holds no diskcache database (cache.db); pass DSPy's cache directory "
            "(DSPY_CACHEDIR, by default ~/.dspy_cache)"
        )
    return found


_MODE_PICKLE = 4


def import_dspy_cache(cache: DiskCache, directory: str | Path) -> TransferReport:
    """Copies every LM response in a DSPy 3.4.1 disk cache (a diskcache FanoutCache directory) into `cache`."""
    report = TransferReport()
    directory = Path(directory)
    if not directory.is_dir():
        raise CacheFileError(f"{directory} is not a directory")
    for db in _shard_databases(directory):
        try:
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
            rows = conn.execute("SELECT key, raw, mode, filename, value FROM Cache").fetchall()
            conn.close()
        except sqlite3.DatabaseError as e:
            report.skipped[f"unreadable database ({e})"] += 1
            continue
        for key, raw, mode, filename, blob in rows:
            if not raw or not isinstance(key, str) or not _KEY.fullmatch(key):
                report.skipped["not request keys"] += 1
                continue
            if mode != _MODE_PICKLE:
                report.skipped["not LM responses"] += 1
                continue
            if blob is None and filename:
                path = (db.parent / filename).resolve()
                if db.parent.resolve() not in path.parents:
                    report.skipped["value files outside the cache"] += 1
                    continue
                try:
                    blob = path.read_bytes()
                except OSError:
                    report.skipped["missing value files"] += 1
                    continue
            try:
                value = _DataOnlyUnpickler(io.BytesIO(blob)).load()
                record = convert_dspy_value(value)
            except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError, IndexError, KeyError):
                report.skipped["not LM responses"] += 1
                continue
            cache.put(key, record)
            report.written += 1
    return report
