"""Compiling a signature into a Rust `Template` once per signature class and adapter style.

The template holds the rendered system message and output reminder; formatting a call and splitting a
completion are then one Rust call each.
"""

from __future__ import annotations

import functools
import textwrap
from typing import Any

from turbodspy._core import Template
from turbodspy.adapters.types.history import History
from turbodspy.adapters.utils import (
    annotation_allows_none,
    expand_custom_type_markers,
    field_coercer,
    field_description,
    format_field_value,
    get_annotation_name,
    serialize_for_json,
    translate_field_type,
)
from turbodspy.errors import AdapterParseError
from turbodspy.signatures.signature import SignatureMeta

_COMPILED = "__turbodspy_compiled__"


class _Compiled:
    """What one signature class has compiled to so far (templates per style, parse plan, output names).

    Our signature classes drop it themselves whenever one of their attributes is set (`SignatureMeta`); for other
    classes it is checked against the instructions and fields it was compiled from.
    """

    __slots__ = ("doc", "fields", "nfields", "owner", "parts", "watched")

    def __init__(self, signature: type, fields: Any) -> None:
        self.owner = signature
        self.watched = isinstance(signature, SignatureMeta)
        self.doc = signature.__doc__
        self.fields = fields
        self.nfields = len(fields)
        self.parts: dict[str, Any] = {}

    def is_current(self, signature: type) -> bool:
        fields = getattr(signature, "__pydantic_fields__", ())
        return self.doc is signature.__doc__ and self.fields is fields and self.nfields == len(fields)


def _parts(signature: type) -> dict[str, Any]:
    """The compiled pieces of `signature` (kept on the class itself, so they live and die with it)."""
    compiled = getattr(signature, _COMPILED, None)
    # A subclass inherits its parent's attribute: `owner` tells them apart.
    if compiled is not None and compiled.owner is signature and (compiled.watched or compiled.is_current(signature)):
        return compiled.parts
    _check_signature(signature)
    compiled = _Compiled(signature, getattr(signature, "__pydantic_fields__", ()))
    type.__setattr__(signature, _COMPILED, compiled)
    return compiled.parts


def template_for(signature: type, style: str) -> Template:
    """The compiled template of `signature` for 'chat' or 'json', compiled on first use."""
    parts = _parts(signature)
    template = parts.get(style)
    if template is None:
        template = parts[style] = _compile(signature, style)
    return template


class ParsePlan:
    """How to turn a signature's parsed output texts into typed values: one coercer per field, and what a
    missing field becomes (its default, its default factory's value, or None when its type allows None)."""

    __slots__ = ("all_str", "coercers", "fields", "names")

    def __init__(self, signature: type):
        self.fields = dict(signature.output_fields)
        self.names = tuple(self.fields)
        self.coercers = {name: field_coercer(field.annotation) for name, field in self.fields.items()}
        self.all_str = all(coerce is str for coerce in self.coercers.values())

    def complete(self, parsed: dict[str, Any]) -> dict[str, Any]:
        """`parsed` in signature order, with missing optional fields filled (`apply_output_field_defaults`)."""
        if tuple(parsed) == self.names:
            return parsed
        if len(parsed) == len(self.names):
            try:
                return {name: parsed[name] for name in self.names}
            except KeyError:
                pass
        completed = {}
        for name, field in self.fields.items():
            if name in parsed:
                completed[name] = parsed[name]
            elif not field.is_required():
                completed[name] = field.get_default(call_default_factory=True)
            elif annotation_allows_none(field.annotation):
                completed[name] = None
        return completed


def parse_plan_for(signature: type) -> ParsePlan:
    """The parse plan of `signature`, built on first use."""
    parts = _parts(signature)
    plan = parts.get("parse")
    if plan is None:
        plan = parts["parse"] = ParsePlan(signature)
    return plan


class ChatCall:
    """What a ChatAdapter call needs of one signature: its chat template, and reading completions back."""

    __slots__ = ("plan", "template")

    def __init__(self, signature: type) -> None:
        self.template = template_for(signature, "chat")
        self.plan = parse_plan_for(signature)

    def parse(self, signature: type, completion: str) -> dict[str, Any]:
        """`ChatAdapter.parse`: the `[[ ## name ## ]]` sections of `completion`, coerced, in signature order."""
        plan = self.plan
        fields = self.template.split_chat(completion)
        if not plan.all_str:
            for name, text in fields.items():
                coerce = plan.coercers[name]
                if coerce is str:
                    continue
                try:
                    fields[name] = coerce(text)
                except ValueError as e:
                    raise AdapterParseError(
                        adapter_name="ChatAdapter",
                        signature=signature,
                        lm_response=completion,
                        message=(
                            f"Failed to parse field {name} with value {text} from the LM response. Error message: {e}"
                        ),
                    ) from e
        fields = plan.complete(fields)
        if len(fields) != len(plan.names):
            raise AdapterParseError(
                adapter_name="ChatAdapter", signature=signature, lm_response=completion, parsed_result=fields
            )
        return fields

    def values(self, adapter_name: str, signature: type, outputs: list[Any]) -> list[dict[str, Any]]:
        """`Adapter._call_postprocess` for a stock ChatAdapter: a successful parse already has every output field
        in order, so there is nothing to fill in."""
        values = []
        for output in outputs:
            text, logprobs = completion_text(output, adapter_name, signature)
            value = self.parse(signature, text)
            if logprobs:
                value["logprobs"] = logprobs
            values.append(value)
        return values


def completion_text(output: Any, adapter_name: str, signature: type) -> tuple[str, Any]:
    """A completion's text and logprobs (an LM output is the text, or a dict holding it); no text is an error."""
    logprobs = None
    text = output
    if type(output) is not str and isinstance(output, dict):
        text = output.get("text")
        logprobs = output.get("logprobs")
    if not text:
        raise AdapterParseError(
            adapter_name=adapter_name,
            signature=signature,
            lm_response=str(output),
            message="The LM returned an empty or null response.",
        )
    return text, logprobs


def chat_call(signature: type) -> ChatCall:
    """The `ChatCall` of `signature`, built on first use (one lookup per call)."""
    parts = _parts(signature)
    call = parts.get("chat_call")
    if call is None:
        call = parts["chat_call"] = ChatCall(signature)
    return call


def output_names(signature: type) -> tuple[str, ...]:
    """The names of `signature`'s output fields, in order (read on every call, so kept per signature)."""
    parts = _parts(signature)
    names = parts.get("names")
    if names is None:
        names = parts["names"] = tuple(signature.output_fields)
    return names


def _check_signature(signature: Any) -> None:
    if not (isinstance(signature, type) and hasattr(signature, "input_fields") and hasattr(signature, "output_fields")):
        raise TypeError(
            f"Adapters take a Signature class, got {signature!r} ({type(signature).__name__}); "
            "build one with dspy.Signature('question -> answer') or dspy.ensure_signature(...)."
        )


def history_field_name(signature: type) -> str | None:
    """The first input field annotated `History`, if any."""
    for name, field in signature.input_fields.items():
        if field.annotation == History:
            return name
    return None


def output_requirement(annotation: Any) -> str:
    """The type hint after a field in the output reminder (nothing for `str`)."""
    return "" if annotation is str else f" (must be formatted as a valid Python {get_annotation_name(annotation)})"


def _field_args(fields: dict[str, Any]) -> list[dict[str, Any]]:
    args = []
    for name, field in fields.items():
        constraints = field.json_schema_extra.get("constraints") if isinstance(field.json_schema_extra, dict) else None
        args.append(
            {
                "name": name,
                "annotation": get_annotation_name(field.annotation),
                "desc": field_description(name, field),
                "constraints": str(constraints) if constraints else "",
                "type_note": translate_field_type(name, field),
                "requirement": output_requirement(field.annotation),
                "is_str": field.annotation is str,
                "format_value": functools.partial(format_field_value, field),
            }
        )
    return args


def _compile(signature: type, style: str) -> Template:
    history = history_field_name(signature)
    input_names = list(signature.input_fields)
    return Template(
        style,
        textwrap.dedent(signature.instructions).splitlines(),
        _field_args(signature.input_fields),
        _field_args(signature.output_fields),
        input_names.index(history) if history is not None else None,
        serialize_for_json,
        expand_custom_type_markers,
    )
