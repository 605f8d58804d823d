"""`Prediction`: what a module returns, an `Example` of output fields plus every completion and LM usage.

`Prediction.from_completions` takes the parsed completions of one LM call (a list of field dicts, one per
choice); the prediction's fields are the first choice's and `.completions` holds them all. A prediction with a
`score` field compares and does arithmetic as that float, as DSPy's does.
"""

from __future__ import annotations

from typing import Any

from turbodspy.primitives.example import Example

_set_attribute = object.__setattr__


class Prediction(Example):
    """Output fields of a module call; `.completions` for all choices, `get_lm_usage()` for token usage."""

    __slots__ = ("_choices", "_lm_usage")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A prediction has no input/label split and no demos (reading them raises AttributeError, as in DSPy).
        del self._demos
        del self._input_keys
        object.__setattr__(self, "_choices", None)
        object.__setattr__(self, "_lm_usage", None)

    def get_lm_usage(self) -> dict[str, dict[str, Any]] | None:
        """Token usage of the LM calls that made this prediction, per LM (needs `configure(track_usage=True)`)."""
        return self._lm_usage

    def set_lm_usage(self, value: dict[str, dict[str, Any]] | None) -> None:
        self._lm_usage = value

    @classmethod
    def from_completions(cls, list_or_dict: list[dict[str, Any]] | dict[str, list[Any]], signature: Any = None):
        """A prediction whose fields are the first completion's, keeping all of them in `.completions`."""
        obj = cls.__new__(cls)
        if type(list_or_dict) is list and len(list_or_dict) == 1 and type(list_or_dict[0]) is dict:
            # One choice, the common case: its dict becomes the fields, and `.completions` is built from them on
            # first read, or before the first change to a field (so it always shows what the LM answered).
            _set_attribute(obj, "_store", list_or_dict[0])
            _set_attribute(obj, "_choices", _one_choice(signature))
        else:
            choices = Completions(list_or_dict, signature=signature)
            _set_attribute(obj, "_store", {k: v[0] for k, v in choices._completions.items()})
            _set_attribute(obj, "_choices", choices)
        _set_attribute(obj, "_lm_usage", None)
        return obj

    @property
    def _completions(self) -> Completions | None:
        choices = self._choices
        if type(choices) is _OneChoice:
            choices = Completions([dict(self._store)], signature=choices.signature)
            object.__setattr__(self, "_choices", choices)
        return choices

    @_completions.setter
    def _completions(self, value: Completions | None) -> None:
        object.__setattr__(self, "_choices", value)

    @property
    def completions(self) -> Completions | None:
        return self._completions

    def __setattr__(self, key: str, value: Any) -> None:
        if not key.startswith("_") and type(self._choices) is _OneChoice:
            self._completions  # noqa: B018 (materialise before the fields change)
        super().__setattr__(key, value)

    def __setitem__(self, key: str, value: Any) -> None:
        if type(self._choices) is _OneChoice:
            self._completions  # noqa: B018
        self._store[key] = value

    def __delitem__(self, key: str) -> None:
        if type(self._choices) is _OneChoice:
            self._completions  # noqa: B018
        del self._store[key]

    def __repr__(self) -> str:
        store_repr = ",\n    ".join(f"{k}={v!r}" for k, v in self._store.items())
        if self._completions is None or len(self._completions) == 1:
            return f"Prediction(\n    {store_repr}\n)"
        omitted = len(self._completions) - 1
        return f"Prediction(\n    {store_repr},\n    completions=Completions(...)\n) ({omitted} completions omitted)"

    __str__ = __repr__

    def __float__(self) -> float:
        if "score" not in self._store:
            raise ValueError("Prediction object does not have a 'score' field to convert to float.")
        return float(self._store["score"])

    def _other(self, other: Any, what: str) -> float:
        if isinstance(other, (float, int)):
            return other
        if isinstance(other, Prediction):
            return float(other)
        raise TypeError(f"Unsupported type for {what}: {type(other)}")

    def __add__(self, other: Any) -> float:
        return float(self) + self._other(other, "addition")

    def __radd__(self, other: Any) -> float:
        return self._other(other, "addition") + float(self)

    def __truediv__(self, other: Any) -> float:
        return float(self) / self._other(other, "division")

    def __rtruediv__(self, other: Any) -> float:
        return self._other(other, "division") / float(self)

    def __lt__(self, other: Any) -> bool:
        return float(self) < self._other(other, "comparison")

    def __le__(self, other: Any) -> bool:
        return float(self) <= self._other(other, "comparison")

    def __gt__(self, other: Any) -> bool:
        return float(self) > self._other(other, "comparison")

    def __ge__(self, other: Any) -> bool:
        return float(self) >= self._other(other, "comparison")

    # Defining __eq__ in Example and comparison operators here must not make predictions unhashable.
    __hash__ = Example.__hash__


class _OneChoice:
    """Stands for the `Completions` of a single-choice prediction until someone needs the real one."""

    __slots__ = ("signature",)

    def __init__(self, signature: Any) -> None:
        self.signature = signature


_one_choice_without_signature = _OneChoice(None)
_ONE_CHOICE = "__turbodspy_one_choice__"


def _one_choice(signature: Any) -> _OneChoice:
    """One shared marker per signature, so a batch of predictions does not hold one marker each.

    The marker is kept on the signature class itself (a subclass inherits its parent's, hence the check).
    """
    if signature is None:
        return _one_choice_without_signature
    marker = getattr(signature, _ONE_CHOICE, None)
    if marker is not None and marker.signature is signature:
        return marker
    marker = _OneChoice(signature)
    if isinstance(signature, type):
        type.__setattr__(signature, _ONE_CHOICE, marker)
    return marker


class Completions:
    """All choices of one LM call, by field: `c.answer` is a list, `c[i]` is the i-th choice as a Prediction."""

    def __init__(self, list_or_dict: list[dict[str, Any]] | dict[str, list[Any]], signature: Any = None) -> None:
        self.signature = signature
        if isinstance(list_or_dict, list) and len(list_or_dict) == 1:
            # One choice (the common case): nothing to check.
            self._completions: dict[str, list[Any]] = {k: [v] for k, v in list_or_dict[0].items()}
            return
        if isinstance(list_or_dict, list):
            by_field: dict[str, list[Any]] = {}
            for choice in list_or_dict:
                for k, v in choice.items():
                    by_field.setdefault(k, []).append(v)
        else:
            by_field = list_or_dict
            if not all(isinstance(v, list) for v in by_field.values()):
                raise ValueError("Completions need a list of values for every field.")
        if by_field:
            length = len(next(iter(by_field.values())))
            if not all(len(v) == length for v in by_field.values()):
                raise ValueError("Completions need the same number of values for every field.")
        self._completions = by_field

    def items(self):
        return self._completions.items()

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            if key < 0 or key >= len(self):
                raise IndexError("Index out of range")
            return Prediction(**{k: v[key] for k, v in self._completions.items()})
        return self._completions[key]

    def __getattr__(self, name: str) -> Any:
        if name == "_completions":
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        if name in self._completions:
            return self._completions[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __len__(self) -> int:
        return len(next(iter(self._completions.values()))) if self._completions else 0

    def __contains__(self, key: object) -> bool:
        return key in self._completions

    def __repr__(self) -> str:
        items_repr = ",\n    ".join(f"{k}={v!r}" for k, v in self._completions.items())
        return f"Completions(\n    {items_repr}\n)"

    __str__ = __repr__
