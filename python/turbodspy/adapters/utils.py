"""Value formatting and type coercion shared by the adapters, with DSPy 3.4.1's rules.

Formatting: `serialize_for_json` and `format_field_value` (the Rust template does the common cases itself and
calls these for values only pydantic knows how to write). Type text: `get_annotation_name`,
`translate_field_type`. Parsing: `parse_value` coerces a field's text to its annotation with pydantic.
"""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import json
import re
import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import TypeAdapter
from pydantic.fields import FieldInfo

from turbodspy._core import parse_json_container, parse_json_value

CUSTOM_TYPE_START_IDENTIFIER = "<<CUSTOM-TYPE-START-IDENTIFIER>>"
CUSTOM_TYPE_END_IDENTIFIER = "<<CUSTOM-TYPE-END-IDENTIFIER>>"


def get_dspy_field_type(field: FieldInfo) -> str | None:
    """'input' or 'output': which side of the signature a field is on."""
    extra = field.json_schema_extra
    return extra.get("__dspy_field_type") if isinstance(extra, dict) else None


def annotation_allows_none(annotation: Any) -> bool:
    """Whether the annotation admits None (`str | None`, `Optional[str]`, `None`)."""
    if annotation is None or annotation is type(None):
        return True
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return bool(args) and annotation_allows_none(args[0])
    if origin is Union or origin is types.UnionType:
        return any(annotation_allows_none(arg) for arg in args)
    return False


def apply_output_field_defaults(signature: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """Fill missing output fields that have a default, a default factory, or allow None; keep signature order."""
    completed = {}
    view = getattr(signature, "_fields_with_type_view", None)  # our signatures skip the copy; DSPy's cannot
    for name, field_info in (view("output") if view is not None else signature.output_fields).items():
        if name in fields:
            completed[name] = fields[name]
        elif not field_info.is_required():
            completed[name] = field_info.get_default(call_default_factory=True)
        elif annotation_allows_none(field_info.annotation):
            completed[name] = None
    return completed


def _is_subclass(annotation: Any, base: type) -> bool:
    try:
        return inspect.isclass(annotation) and issubclass(annotation, base)
    except TypeError:
        return False


@functools.lru_cache(maxsize=1024)
def _type_adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


def _cached_type_adapter(annotation: Any) -> TypeAdapter:
    try:
        return _type_adapter(annotation)
    except TypeError:  # unhashable annotation
        return TypeAdapter(annotation)


def serialize_for_json(value: Any) -> Any:
    """`value` as JSON-native data (pydantic's JSON mode); what pydantic cannot write becomes `str(value)`."""
    try:
        return _cached_type_adapter(type(value)).dump_python(value, mode="json", fallback=str)
    except Exception:
        return str(value)


def format_field_value(field_info: FieldInfo, value: Any, assume_text: bool = True) -> str | dict:
    """A field value as prompt text: lists for `str` fields as numbered blobs, containers as JSON, else str()."""
    if isinstance(value, list) and field_info.annotation is str:
        string_value = _format_input_list_field_value(value)
    else:
        jsonable = serialize_for_json(value)
        if isinstance(jsonable, (dict, list)):
            string_value = json.dumps(jsonable, ensure_ascii=False)
        else:
            # A JSON string is used as is: quoting it would change what the LM sees (e.g. its length).
            string_value = str(jsonable)
    return string_value if assume_text else {"type": "text", "text": string_value}


def _format_input_list_field_value(value: list[Any]) -> str:
    if len(value) == 0:
        return "N/A"
    if len(value) == 1:
        return _format_blob(value[0])
    return "\n".join(f"[{idx + 1}] {_format_blob(txt)}" for idx, txt in enumerate(value))


def _format_blob(blob: str) -> str:
    if "\n" not in blob and "«" not in blob and "»" not in blob:
        return f"«{blob}»"
    modified = blob.replace("\n", "\n    ")
    return f"«««\n    {modified}\n»»»"


def _json_schema(field_type: Any) -> dict:
    """The field type's JSON schema with every `type` key first (models follow it more reliably)."""

    def type_first(d: Any) -> Any:
        if isinstance(d, Mapping):
            return {k: type_first(v) for k, v in sorted(d.items(), key=lambda item: (item[0] != "type", item[0]))}
        if isinstance(d, list):
            return [type_first(item) for item in d]
        return d

    return type_first(TypeAdapter(field_type).json_schema())


def translate_field_type(field_name: str, field_info: FieldInfo) -> str:
    """The structure line of a field: `{name}` plus a note on the value an output of this type must have."""
    field_type = field_info.annotation
    if get_dspy_field_type(field_info) == "input" or field_type is str:
        desc = ""
    elif field_type is bool:
        desc = "must be True or False"
    elif field_type in (int, float):
        desc = f"must be a single {field_type.__name__} value"
    elif _is_subclass(field_type, enum.Enum):
        desc = f"must be one of: {'; '.join(str(member.value) for member in field_type)}"
    elif get_origin(field_type) is Literal:
        desc = f"must exactly match (no extra characters) one of: {'; '.join(str(x) for x in get_args(field_type))}"
    else:
        desc = f"must adhere to the JSON schema: {json.dumps(_json_schema(field_type), ensure_ascii=False)}"
    desc = (" " * 8) + f"# note: the value you produce {desc}" if desc else ""
    return f"{{{field_name}}}{desc}"


def get_annotation_name(annotation: Any) -> str:
    """A type as the prompt names it: `str`, `list[int]`, `Literal['a', 'b']`, `Union[str, NoneType]`."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is types.UnionType:
        origin = Union
    if origin is None:
        return annotation.__name__ if hasattr(annotation, "__name__") else str(annotation)
    if origin is Literal:
        args_str = ", ".join(_quote_literal(a) if isinstance(a, str) else get_annotation_name(a) for a in args)
    else:
        args_str = ", ".join(get_annotation_name(a) for a in args)
    return f"{get_annotation_name(origin)}[{args_str}]"


def _quote_literal(s: str) -> str:
    has_single, has_double = "'" in s, '"' in s
    if has_single and not has_double:
        return f'"{s}"'
    if has_double and not has_single:
        return f"'{s}'"
    if has_single and has_double:
        escaped = s.replace("'", "\\'")
        return f"'{escaped}'"
    return f"'{s}'"


def field_description(name: str, field: FieldInfo) -> str:
    """The field's description, or '' when it is the `${name}` placeholder signatures fill in."""
    desc = field.json_schema_extra["desc"]
    return "" if desc == f"${{{name}}}" else desc


def find_enum_member(enum_type: type[enum.Enum], identifier: Any) -> enum.Enum:
    """The member whose value (checked first) or name is `identifier`."""
    for member in enum_type:
        if member.value == identifier:
            return member
    if identifier in enum_type.__members__:
        return enum_type[identifier]
    raise ValueError(f"{identifier} is not a valid name or value for the enum {enum_type.__name__}")


def _json_candidate(value: str) -> Any:
    """What a field's text means as data: JSON, else the first JSON container in it, else a Python literal."""
    found, candidate = parse_json_value(value)
    if found:
        return candidate
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def parse_value(value: Any, annotation: Any) -> Any:
    """Coerce a parsed field (text, or JSON data) to `annotation`; raises ValueError (pydantic's) when it cannot."""
    if annotation is str:
        return str(value)
    if isinstance(annotation, enum.EnumMeta):
        return find_enum_member(annotation, value)
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value in allowed:
            return value
        if isinstance(value, str):
            v = value.strip()
            if v.startswith(("Literal[", "str[")) and v.endswith("]"):
                v = v[v.find("[") + 1 : -1]
            if len(v) > 1 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            if v in allowed:
                return v
            value = v
    if not isinstance(value, str):
        return _cached_type_adapter(annotation).validate_python(value)
    if origin in (Union, types.UnionType) and type(None) in get_args(annotation) and str in get_args(annotation):
        return _cached_type_adapter(annotation).validate_python(value)
    candidate = _json_candidate(value)
    return _cached_type_adapter(annotation).validate_python(candidate)


def field_coercer(annotation: Any) -> Callable[[Any], Any]:
    """`parse_value` specialised once for `annotation` (what a compiled signature keeps per output field)."""
    if annotation is str:
        return str
    if isinstance(annotation, enum.EnumMeta):
        return functools.partial(find_enum_member, annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return functools.partial(_parse_as, annotation=annotation)
    adapter = _cached_type_adapter(annotation)
    if origin in (Union, types.UnionType) and type(None) in get_args(annotation) and str in get_args(annotation):
        return adapter.validate_python
    validate = adapter.validate_python

    def coerce(value: Any) -> Any:
        return validate(_json_candidate(value) if isinstance(value, str) else value)

    return coerce


def _parse_as(value: Any, annotation: Any) -> Any:
    return parse_value(value, annotation)


_MARKER = re.compile(rf"{CUSTOM_TYPE_START_IDENTIFIER}(.*?){CUSTOM_TYPE_END_IDENTIFIER}", re.DOTALL)


def expand_custom_type_markers(message: dict[str, Any]) -> dict[str, Any]:
    """Split a user message holding custom-type markers into content blocks, as DSPy does."""
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, str) or CUSTOM_TYPE_START_IDENTIFIER not in content:
        return message
    blocks: list[dict[str, Any]] = []
    last_end = 0
    for match in _MARKER.finditer(content):
        start, end = match.span()
        if start > last_end:
            blocks.append({"type": "text", "text": content[last_end:start]})
        blocks.extend(_marker_payload_blocks(match.group(1).strip()))
        last_end = end
    if last_end < len(content):
        blocks.append({"type": "text", "text": content[last_end:]})
    return {**message, "content": blocks}


def _marker_payload_blocks(payload: str) -> list[dict[str, Any]]:
    parsed: Any = None
    for parse in (json.loads, lambda p: json.loads(json.loads(f'"{p}"')), parse_json_container):
        try:
            parsed = parse(payload)
            break
        except Exception:
            continue
    if isinstance(parsed, list):
        return [block if isinstance(block, dict) else {"type": "text", "text": str(block)} for block in parsed]
    return [{"type": "text", "text": payload}]
