"""Typed stub of turbodspy's Rust core. Nothing outside the package imports `_core` directly."""

__version__: str

class UnsupportedValueError(TypeError):
    """A request holds a value that is not JSON-native (the caller transforms it and retries)."""

def request_key(request: dict[str, object], ignored: list[str] = ..., fn_identifier: str | None = None) -> str:
    """SHA-256 hex of `request` as compact sorted-key JSON (orjson's bytes), minus top-level `ignored` keys.

    `fn_identifier`, when given, is hashed as the member `_fn_identifier` (overriding one in `request`).
    """

def call_id() -> str:
    """A fresh UUID4-format string, unique per call (not for secrets)."""

class SignatureSyntaxError(ValueError):
    """A malformed signature string; the message says what and where."""

    signature: str
    position: int | None

# A field as parsed: (name, "Prefix:" (None for non-ASCII names), type text, type tree, position of the name).
# Type trees are tuples tagged by their first item: 0 name (id, pos), 1 attribute (value, attr, pos),
# 2 subscript (value, args, pos), 3 union (left, right), 4 tuple (items,), 5 constant (value,),
# 6 int (text,), 7 float (text,), 8 call (func, ((key, value), ...), pos). Positions are character offsets.
ParsedField = tuple[str, str | None, str | None, tuple | None, int]

def parse_signature(
    text: str,
) -> tuple[tuple[ParsedField, ...], tuple[ParsedField, ...], tuple[str, ...], str]:
    """Inputs, outputs, the distinct names the types mention (in order) and DSPy's default instructions.

    Raises SignatureSyntaxError with the position on bad input.
    """

def signature_error(signature: str, what: str, position: int | None = None) -> SignatureSyntaxError:
    """The SignatureSyntaxError for a problem found after parsing (an unknown type name at `position`)."""

def infer_ascii_prefix(name: str) -> str | None:
    """DSPy's prefix for an ASCII field name ("camelCase" -> "Camel Case"); None for other names."""
