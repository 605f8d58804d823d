"""`Example`: one record of named fields (a row of a train or dev set), with DSPy's input/label split.

Fields are read as attributes or items; `with_inputs(...)` marks which fields a program takes, `inputs()` and
`labels()` split the record, and `toDict()` gives a JSON-friendly dict. Fields named `dspy_*` are internal and
hidden from `keys()`, `len()` and `repr()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Names defined on each class (methods, properties): assigning one of these sets the attribute, not a field.
_class_names: dict[type, frozenset[str]] = {}


def _names_of(cls: type) -> frozenset[str]:
    names = _class_names.get(cls)
    if names is None:
        names = _class_names[cls] = frozenset(dir(cls))
    return names


class Example:
    """A record of named fields, e.g. `Example(question="2+2?", answer="4").with_inputs("question")`."""

    # Slots keep a batch of thousands of examples and predictions small; `__dict__` stays for other attributes.
    __slots__ = ("__dict__", "__weakref__", "_demos", "_input_keys", "_store")

    def __init__(self, base: Example | dict[str, Any] | None = None, **kwargs: Any) -> None:
        store: dict[str, Any]
        input_keys = None
        if base is None:
            store = {}
        elif base and isinstance(base, type(self)):
            store = base._store.copy()
            base_keys = getattr(base, "_input_keys", None)
            if base_keys is not None:
                input_keys = set(base_keys)
        elif base and isinstance(base, dict):
            store = base.copy()
        else:
            store = {}
        store.update(kwargs)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_demos", [])
        object.__setattr__(self, "_input_keys", input_keys)

    def __getattr__(self, key: str) -> Any:
        if (key.startswith("__") and key.endswith("__")) or key == "_store":
            raise AttributeError(key)
        try:
            return self._store[key]
        except KeyError:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{key}'") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_") or key in _names_of(type(self)):
            object.__setattr__(self, key, value)
        else:
            self._store[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len([k for k in self._store if not k.startswith("dspy_")])

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._store))

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._store.items() if not k.startswith("dspy_")}
        return f"Example({shown}) (input_keys={self._input_keys})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Example) and self._store == other._store

    def __hash__(self) -> int:
        return hash(frozenset(self._store.items()))

    def keys(self, include_dspy: bool = False) -> list[str]:
        """Field names (without internal `dspy_*` ones unless asked)."""
        return [k for k in self._store if include_dspy or not k.startswith("dspy_")]

    def values(self, include_dspy: bool = False) -> list[Any]:
        """Field values, in field order."""
        return [v for k, v in self._store.items() if include_dspy or not k.startswith("dspy_")]

    def items(self, include_dspy: bool = False) -> list[tuple[str, Any]]:
        """`(name, value)` pairs, in field order."""
        return [(k, v) for k, v in self._store.items() if include_dspy or not k.startswith("dspy_")]

    def get(self, key: str, default: Any = None) -> Any:
        """The field's value, or `default` when there is no such field."""
        return self._store.get(key, default)

    def with_inputs(self, *keys: str) -> Example:
        """A copy with `keys` marked as the program's inputs; every other field is a label."""
        copied = self.copy()
        copied._input_keys = set(keys)
        return copied

    def inputs(self) -> Example:
        """A new example with only the input fields. Raises ValueError if `with_inputs` was never called."""
        if self._input_keys is None:
            raise ValueError("Inputs have not been set for this example. Use `example.with_inputs()` to set them.")
        input_keys = self._input_keys
        new = type(self)(base={k: v for k, v in self._store.items() if k in input_keys})
        new._input_keys = input_keys
        return new

    def labels(self) -> Example:
        """A new example with only the label (non-input) fields."""
        input_keys = self.inputs().keys()
        return type(self)({k: v for k, v in self._store.items() if k not in input_keys})

    def copy(self, **kwargs: Any) -> Example:
        """A shallow copy, with `kwargs` added or overriding fields."""
        return type(self)(base=self, **kwargs)

    def without(self, *keys: str) -> Example:
        """A copy with the named fields removed."""
        copied = self.copy()
        for key in keys:
            del copied[key]
        return copied

    def toDict(self) -> dict[str, Any]:
        """A plain dict of the fields; nested examples, pydantic models, lists and dicts are converted too."""
        return {k: _serializable(v) for k, v in self._store.items()}


def _serializable(value: Any) -> Any:
    if hasattr(value, "toDict"):
        return value.toDict()
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump()
    if isinstance(value, list):
        return [_serializable(v) for v in value]
    if isinstance(value, dict):
        return {k: _serializable(v) for k, v in value.items()}
    return value
