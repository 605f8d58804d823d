"""Typed stub of turbodspy's Rust core. Nothing outside the package imports `_core` directly."""

__version__: str

class UnsupportedValueError(TypeError):
    """A request holds a value that is not JSON-native (the caller transforms it and retries)."""

def request_key(request: dict[str, object], ignored: list[str] = ...) -> str:
    """SHA-256 hex of `request` as compact sorted-key JSON (orjson's bytes), minus top-level `ignored` keys."""
