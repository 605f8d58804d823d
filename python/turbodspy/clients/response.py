"""Provider responses as plain data: what the cache stores, and the read-only view a cache hit returns.

A fresh call returns LiteLLM's response object. A cached one returns `CachedResponse`, which reads like it
(`response.choices[0].message.content`, `response.model`, `response["usage"]`) without importing LiteLLM or
building pydantic models, and reports `usage == {}` and `cache_hit == True`, as DSPy does.
"""

from __future__ import annotations

import json
from typing import Any


class DataView:
    """Attribute and item access over a JSON-native dict; nested dicts and lists come back as views too."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]):
        self._data = data

    def __getattr__(self, name: str) -> Any:
        # Protocol lookups (copy and pickle ask for `__setstate__` and the like) and our own empty slots are
        # never fields: answering them from the data would recurse or pretend.
        if name.startswith("__") or name in _OWN_SLOTS:
            raise AttributeError(name)
        try:
            return _view(self._data[name])
        except KeyError:
            raise AttributeError(name) from None

    def __reduce__(self) -> tuple:
        return (type(self), (self._data,))

    def __getitem__(self, name: str) -> Any:
        return _view(self._data[name])

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def get(self, name: str, default: Any = None) -> Any:
        return _view(self._data.get(name, default))

    def keys(self) -> Any:
        return self._data.keys()

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._data))

    model_dump = to_dict

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DataView):
            return self._data == other._data
        return self._data == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


class CachedResponse(DataView):
    """A cached provider response: no usage is billed for it, and it says it came from the cache.

    Given a `StoredRecord` instead of data, it decodes the response on first access: a hit that nobody
    inspects never pays for building it.
    """

    __slots__ = ("_cost", "_stored")

    def __init__(self, data: dict[str, Any] | None, cost: float | None = None, stored: Any = None):
        if data is not None:
            self._data = data
        self._cost = cost
        self._stored = stored

    def __getattr__(self, name: str) -> Any:
        if name == "_data":  # the slot is empty until the stored record is first read
            stored = self._stored
            if stored is None:  # decoded meanwhile by another thread (which let go of the record)
                return _DATA_SLOT.__get__(self, type(self))
            data = self._data = stored.decode()["response"]
            self._stored = None  # its bytes are not needed any more
            return data
        return super().__getattr__(name)

    def __reduce__(self) -> tuple:
        # A copy or a pickle holds the data itself, never the undecoded record.
        return (CachedResponse, (self._data, self._cost))

    @property
    def usage(self) -> dict[str, Any]:
        return {}

    @property
    def cache_hit(self) -> bool:
        return True

    @property
    def _hidden_params(self) -> dict[str, Any]:
        return {"response_cost": self._cost}

    def __getitem__(self, name: str) -> Any:
        return {} if name == "usage" else super().__getitem__(name)


_OWN_SLOTS = frozenset({"_data", "_cost", "_stored"})
_DATA_SLOT = DataView._data  # the slot's descriptor: reads the slot without going through __getattr__


def _view(value: Any) -> Any:
    if isinstance(value, dict):
        return DataView(value)
    if isinstance(value, list):
        return [_view(item) for item in value]
    return value


def response_to_data(response: Any) -> dict[str, Any]:
    """A provider response (LiteLLM object, pydantic model or dict) as a JSON-native dict."""
    if isinstance(response, DataView):
        return response._data
    if isinstance(response, dict):
        data = response
    elif hasattr(response, "model_dump"):
        data = response.model_dump(mode="json", exclude_none=False, warnings=False)
    elif hasattr(response, "to_dict"):
        data = response.to_dict()
    else:
        raise TypeError(f"cannot store a {type(response).__name__} response in the cache")
    # A round trip through JSON proves it is data (and drops SDK objects a dump may leave behind).
    return json.loads(json.dumps(data, default=_refuse))


def _refuse(value: Any) -> Any:
    raise TypeError(f"response holds a non-JSON value of type {type(value).__name__}")


def get_field(obj: Any, name: str, default: Any = None) -> Any:
    """Read a field from a dict, a view, or an SDK object alike."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)
