"""Signature fields: `InputField` and `OutputField`, pydantic `FieldInfo`s that carry DSPy's extras.

The extras (`desc`, `prefix`, `format`, `parser`, and the field's role under `__dspy_field_type`) live in
`json_schema_extra`, exactly where DSPy 3.4.1 keeps them, so adapters read them the same way.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import pydantic
from pydantic.fields import FieldInfo

#: Marks a field whose type was not written (DSPy's `IS_TYPE_UNDEFINED`); such fields default to `str`.
IS_TYPE_UNDEFINED = "IS_TYPE_UNDEFINED"

#: Keyword arguments that belong to DSPy rather than pydantic; they go to `json_schema_extra`.
DSPY_FIELD_ARG_NAMES = ["desc", "prefix", "format", "parser", "__dspy_field_type", IS_TYPE_UNDEFINED]

_DEPRECATED_FIELD_ARGS = ("prefix", "format", "parser")

#: Pydantic constraints, and how a prompt spells them out.
PYDANTIC_CONSTRAINT_MAP = {
    "gt": "greater than: ",
    "ge": "greater than or equal to: ",
    "lt": "less than: ",
    "le": "less than or equal to: ",
    "min_length": "minimum length: ",
    "max_length": "maximum length: ",
    "multiple_of": "a multiple of the given number: ",
    "allow_inf_nan": "allow 'inf', '-inf', 'nan' values: ",
}


def move_kwargs(**kwargs: Any) -> dict[str, Any]:
    """Splits field keyword arguments into pydantic's own and DSPy's extras (under `json_schema_extra`)."""
    pydantic_kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in DSPY_FIELD_ARG_NAMES:
            extra[key] = value
        else:
            pydantic_kwargs[key] = value
    # A pydantic `description` doubles as DSPy's `desc` unless one was given.
    if "description" in kwargs and "desc" not in extra:
        extra["desc"] = kwargs["description"]
    # Constraints are listed in the order they were passed.
    constraints = ", ".join(
        f"{PYDANTIC_CONSTRAINT_MAP[key]}{value}" for key, value in kwargs.items() if key in PYDANTIC_CONSTRAINT_MAP
    )
    if constraints:
        extra["constraints"] = constraints
    pydantic_kwargs["json_schema_extra"] = extra
    return pydantic_kwargs


def _warn_deprecated(kwargs: dict[str, Any]) -> None:
    for arg in _DEPRECATED_FIELD_ARGS:
        if arg in kwargs:
            warnings.warn(
                f"The '{arg}' argument in InputField/OutputField is deprecated and has no effect in DSPy. "
                "It will be removed in a future version.",
                DeprecationWarning,
                stacklevel=3,
            )


def InputField(**kwargs: Any) -> Any:
    """A signature input: `question: str = InputField(desc="...")`."""
    _warn_deprecated(kwargs)
    return pydantic.Field(**move_kwargs(**kwargs, __dspy_field_type="input"))


def OutputField(**kwargs: Any) -> Any:
    """A signature output: `answer: int = OutputField(desc="...")`."""
    _warn_deprecated(kwargs)
    return pydantic.Field(**move_kwargs(**kwargs, __dspy_field_type="output"))


def get_dspy_field_type(field: FieldInfo) -> Literal["input", "output"]:
    """The role of a signature field: "input" or "output"."""
    field_type = field.json_schema_extra.get("__dspy_field_type")  # type: ignore[union-attr]
    if field_type is None:
        raise ValueError(f"Field {field} does not have a __dspy_field_type")
    return field_type


def new_to_old_field(field: FieldInfo) -> OldField:
    """The legacy field object for a signature field (DSPy keeps these for old templates)."""
    extra: dict[str, Any] = field.json_schema_extra  # type: ignore[assignment]
    cls = OldInputField if extra["__dspy_field_type"] == "input" else OldOutputField
    return cls(prefix=extra["prefix"], desc=extra["desc"], format=extra.get("format"))


class OldField:
    """DSPy's legacy field: infers `prefix` and `desc` from the field name when omitted."""

    def __init__(self, *, prefix: str | None = None, desc: str | None = None, input: bool, format: Any = None):
        self.prefix = prefix
        self.desc = desc
        self.format = format

    def finalize(self, key: str, inferred_prefix: str) -> None:
        """Fills in the prefix and description that were not given."""
        if self.prefix is None:
            self.prefix = inferred_prefix + ":"
        if self.desc is None:
            self.desc = f"${{{key}}}"

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(prefix={self.prefix}, desc={self.desc})"

    def __eq__(self, other: object) -> bool:
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]


class OldInputField(OldField):
    """Legacy input field."""

    def __init__(self, *, prefix: str | None = None, desc: str | None = None, format: Any = None):
        super().__init__(prefix=prefix, desc=desc, input=True, format=format)


class OldOutputField(OldField):
    """Legacy output field."""

    def __init__(self, *, prefix: str | None = None, desc: str | None = None, format: Any = None):
        super().__init__(prefix=prefix, desc=desc, input=False, format=format)
