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
