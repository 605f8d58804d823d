"""Typed stub of turbodspy's Rust core. Nothing outside the package imports `_core` directly."""

__version__: str

class UnsupportedValueError(TypeError):
    """A request holds a value that is not JSON-native (the caller transforms it and retries)."""

def request_key(request: dict[str, object], ignored: list[str] = ...) -> str:
    """SHA-256 hex of `request` as compact sorted-key JSON (orjson's bytes), minus top-level `ignored` keys."""

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
    def peek(self, key: str) -> dict[str, object] | None:
        """Like `get`, not counted."""
    def contains(self, key: str) -> bool: ...
    def put(self, key: str, record: dict[str, object], tokens: int = 0, cost: float = 0.0) -> None:
        """Stores a JSON-native `record` (TypeError otherwise); `tokens`/`cost` (dollars) are what a hit saves."""
    def stats(self) -> dict[str, int | float | str]: ...
    def verify(self) -> dict[str, int | bool]: ...
    def clear(self) -> None: ...
    def keys(self) -> list[str]: ...
