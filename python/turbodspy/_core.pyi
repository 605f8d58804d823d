"""Typed stub of turbodspy's Rust core. Nothing outside the package imports `_core` directly."""

from collections.abc import Sequence

__version__: str
OUTPUTS_ARE_MESSAGE_CONTENTS: str

class UnsupportedValueError(TypeError):
    """A request holds a value that is not JSON-native (the caller transforms it and retries)."""

def request_key(request: dict[str, object], ignored: list[str] = ..., fn_identifier: str | None = None) -> str:
    """SHA-256 hex of `request` as compact sorted-key JSON (orjson's bytes), minus top-level `ignored` keys.

    `fn_identifier`, when given, is hashed as the member `_fn_identifier` (overriding one in `request`).
    """

def cache_key(
    request: dict[str, object],
    ignored_args_for_cache_key: Sequence[str] | None = None,
    fn_identifier: str | None = None,
) -> str:
    """`request_key`, or for a request holding non-JSON values the key of
    `turbodspy.clients.cache.transformed_request(request, ignored)`."""

class RequestKeyer:
    """The key of an LM call without call kwargs, from its prompt or messages alone: the canonical JSON around
    the messages (model, kwargs, identifier) is written once. It answers only while the LM holds the very
    objects it was built from (model, model_type, the kwargs dict and each of its members)."""

    def __init__(
        self,
        model: object = None,
        model_type: object = None,
        kwargs: object = None,
        ignored: Sequence[str] = (),
        identifiers: tuple[str, str] | None = None,
    ) -> None:
        """Without arguments: a keyer that holds nothing. Without `identifiers`, or with kwargs that are not a
        dict of immutable JSON scalars: a keyer that answers "" for this LM state."""
    def key(
        self,
        model: object,
        model_type: object,
        kwargs: object,
        prompt: object,
        messages: object,
        asynchronous: bool,
    ) -> str | None:
        """`request_key` of the call's whole request; "" when only the general path keys this LM's calls; None
        when the LM no longer holds the objects the keyer was built from. Messages that are not JSON-native
        raise `UnsupportedValueError`."""

def call_id() -> str:
    """A fresh UUID4-format string, unique per call (not for secrets)."""

def call_ids_after_fork() -> None:
    """Run in a forked child, so its call ids never repeat its parent's."""

def timestamp() -> str:
    """The local time as `datetime.now().isoformat()` writes it (no fraction when the microseconds are 0)."""

class DiskStore:
    """A cache directory shared by processes: append-only segment files and a mapped hash index.

    Nothing touches the disk until the first call. I/O problems raise `OSError` (with errno);
    a malformed key or an oversized value raises `ValueError`.
    """

    def __init__(self, directory: str, size_limit_bytes: int) -> None: ...
    @property
    def directory(self) -> str: ...
    @property
    def size_limit_bytes(self) -> int: ...
    def get(self, key: str) -> dict[str, object] | None:
        """The record under `key` (64 hex chars), or None; counted in the hit/miss statistics."""
    def get_entry(self, key: str) -> StoredEntry | None:
        """The LM cache entry under `key`, or None: its record checked whole (a forged one is a miss) and
        decoded only as far as a hit needs; counted in the hit/miss statistics."""
    def peek(self, key: str) -> dict[str, object] | None:
        """Like `get`, not counted."""
    def contains(self, key: str) -> bool: ...
    def put(self, key: str, record: dict[str, object], tokens: int = 0, cost: float = 0.0) -> None:
        """Stores a JSON-native `record` (TypeError otherwise); `tokens`/`cost` (dollars) are what a hit saves."""
    def stats(self) -> dict[str, int | float | str]: ...
    def verify(self) -> dict[str, int | bool]: ...
    def clear(self) -> None: ...
    def keys(self) -> list[str]: ...

class StoredRecord:
    """A record read from the disk store: checksum and structure checked, decoded only on request."""

    def decode(self) -> dict[str, object]: ...
    def __len__(self) -> int: ...

class StoredEntry:
    """An LM cache entry read from disk, as the memory tier keeps it (it reads like `clients.cache.CacheEntry`)."""

    stored: StoredRecord
    size: int
    leading: tuple[object, object, object]
    """`(outputs, cost, response_model)`; outputs stored as the message-contents marker come back as that text."""
    derived: object
    """What hits on the entry hand out, set once by its first hit (None until then)."""
    record: dict[str, object]
    """The whole record, decoded on first access and kept."""

class SignatureSyntaxError(ValueError):
    """A malformed signature string; the message says what and where."""

    signature: str
    position: int | None

# A field as parsed: (name, prefix (None for non-ASCII names), type text, type tree, position of the name).
# Type trees are tuples tagged by their first item: 0 name (id, pos), 1 attribute (value, attr, pos),
# 2 subscript (value, args, pos), 3 union (left, right), 4 tuple (items,), 5 constant (value,),
# 6 int (text,), 7 float (text,), 8 call (func, ((key, value), ...), pos). Positions are character offsets.
ParsedField = tuple[str, str | None, str | None, tuple | None, int]

def parse_signature(text: str) -> tuple[tuple[ParsedField, ...], tuple[ParsedField, ...]]:
    """Inputs and outputs of a signature string; raises SignatureSyntaxError with the position on bad input."""

def signature_error(signature: str, what: str, position: int | None = None) -> SignatureSyntaxError:
    """The SignatureSyntaxError for a problem found after parsing (an unknown type name at `position`)."""

def infer_ascii_prefix(name: str) -> str | None:
    """DSPy's prefix for an ASCII field name ("camelCase" -> "Camel Case"); None for other names."""

class Template:
    """A signature compiled for ChatAdapter ('chat') or JSONAdapter ('json'): fixed texts rendered once."""

    def __init__(
        self,
        style: str,
        instruction_lines: list[str],
        inputs: list[dict[str, object]],
        outputs: list[dict[str, object]],
        history: int | None,
        serialize: object,
        expand_markers: object,
    ) -> None: ...
    def system_message(self) -> str: ...
    def field_description(self) -> str: ...
    def field_structure(self) -> str: ...
    def task_description(self) -> str: ...
    def output_requirements(self) -> str: ...
    def format(self, demos: object, inputs: object) -> list[dict[str, object]]:
        """All messages of one call: system, demos, conversation history, current request."""
    def user_content(
        self,
        inputs: object,
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
        requirements: str | None = None,
    ) -> str: ...
    def assistant_content(self, outputs: object, missing: str | None = None) -> str: ...
    def demo_messages(self, demos: object) -> list[dict[str, object]]: ...
    def history_messages(self, turns: object) -> list[dict[str, object]]: ...
    def split_chat(self, completion: str) -> dict[str, str]:
        """The raw text of each output field's first `[[ ## name ## ]]` section, in signature order."""

def parse_json_object(completion: str) -> dict[str, object] | None:
    """The JSON object in a completion (repaired if needed), or None when there is none."""

def parse_json_container(text: str) -> object | None:
    """The first JSON array or object in `text` (repaired if needed), or None when there is none."""

def parse_json_value(text: str) -> tuple[bool, object]:
    """`(True, value)` when a field's text is JSON or holds a JSON array/object (repaired), else `(False, None)`."""
