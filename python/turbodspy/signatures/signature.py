"""`Signature`: what a module takes and produces, as a pydantic model class (DSPy 3.4.1's API and behaviour).

Write one as a string, `Signature("question, context: list[str] -> answer: int", "instructions")`, or as a
class whose docstring is the instructions and whose annotated `InputField`/`OutputField` attributes are the
fields. Strings are parsed in Rust (`_core.parse_signature`); names in types resolve here. Classes built from
a string are cached: the same string (and instructions, and resolved custom types) gives the same class.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import typing
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo

from turbodspy._core import SignatureSyntaxError, parse_signature, signature_error
from turbodspy.signatures import build
from turbodspy.signatures.field import IS_TYPE_UNDEFINED, InputField, OutputField
from turbodspy.signatures.resolve import _static_types, current_frame, find_in_frames, needs_caller, resolve_type

_MODULE = __name__
_FIELD_TYPE_CLASSES = (type, typing._GenericAlias, types.GenericAlias, typing._SpecialForm, types.UnionType)  # type: ignore[attr-defined]
_MISSING = object()

# Field names DSPy cannot build a signature with (they collide with the class's own API).
_RESERVED = frozenset({"instructions", "signature", "fields", "input_fields", "output_fields", "model_config"})

# signature string -> _parse's result, for strings whose classes depend on custom or caller types
_parsed: OrderedDict[str, tuple[tuple, tuple, tuple[str, ...], tuple[str, ...]]] = OrderedDict()
# names a signature's types mention -> those of them looked up in the caller's frames
_free_names: OrderedDict[tuple[str, ...], tuple[str, ...]] = OrderedDict()
# (string, instructions, class name[, custom types used]) -> class, least recently used first
_classes: OrderedDict[tuple, type] = OrderedDict()
# Type texts resolved from fixed namespaces whose types are valid field types that pydantic takes as is.
_plain_static_types: OrderedDict[str, Any] = OrderedDict()
_CACHE_LIMIT = 1024
# Classes are kept for the strings a program repeats. A class held here past the young generations of Python's
# garbage collector lands in the oldest one, and a program that builds ever-new strings then pays a full
# collection every few thousand builds: the strong bound stays below what a young collection lets live. Classes
# pushed out are still found while something else holds them (`_in_use`, weakly).
_CLASS_CACHE_LIMIT = 16
# key -> weak reference to a class pushed out of `_classes`; dead entries are swept when it doubles in size.
_in_use: dict[tuple, weakref.ref] = {}
_in_use_sweep_at = _CACHE_LIMIT


def _evict_oldest(cache: OrderedDict) -> None:
    try:
        cache.popitem(last=False)
    except KeyError:  # another thread emptied it first
        pass


def _cached_class(key: tuple) -> Any:
    """The class cached under `key` (made most recently used), or None. Raises TypeError for unhashable keys."""
    hit = _classes.get(key)
    if hit is not None:
        try:  # least recently used goes first
            _classes.move_to_end(key)
        except KeyError:  # another thread evicted it meanwhile
            pass
        return hit
    ref = _in_use.get(key)
    if ref is None:
        return None
    hit = ref()
    if hit is not None:
        _cache_class(key, hit)
    return hit


def _cache_class(key: tuple, cls: type) -> None:
    """Caches `cls` under `key`, moving the least recently used class to the weak tier when full."""
    global _in_use_sweep_at
    if len(_classes) >= _CLASS_CACHE_LIMIT:
        try:
            old_key, old = _classes.popitem(last=False)
        except KeyError:  # another thread emptied it first
            pass
        else:
            _in_use[old_key] = weakref.ref(old)
            if len(_in_use) >= _in_use_sweep_at:
                for dead in [k for k, r in list(_in_use.items()) if r() is None]:
                    _in_use.pop(dead, None)
                _in_use_sweep_at = max(_CACHE_LIMIT, 2 * len(_in_use))
    _classes[key] = cls


def _forget_class(key: tuple, cls: type) -> None:
    """Drops `cls` from both tiers (its instructions changed: it no longer matches its key)."""
    if _classes.get(key) is cls:
        _classes.pop(key, None)
    ref = _in_use.get(key)
    if ref is not None and ref() is cls:
        _in_use.pop(key, None)


def _forget_compiled(cls: type) -> None:
    """Drop what adapters compiled from `cls` (prompt templates, parse plans): any change to the class, such as
    new instructions or rebuilt fields, may make them out of date. Adapters compile again on their next call."""
    if "__turbodspy_compiled__" in cls.__dict__:
        type.__delattr__(cls, "__turbodspy_compiled__")


def _default_instructions(inputs: Any, outputs: Any) -> str:
    inputs_ = ", ".join(f"`{name}`" for name in inputs)
    outputs_ = ", ".join(f"`{name}`" for name in outputs)
    return f"Given the fields {inputs_}, produce the fields {outputs_}."


class SignatureMeta(type(BaseModel)):  # type: ignore[misc]
    """The metaclass of signatures: `Signature(...)` builds a new class; properties expose its fields."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Signature:
            # `Signature("a -> b")` makes a new signature class rather than an instance.
            if args and isinstance(args[0], str):
                if len(args) <= 2 and not kwargs and type(args[0]) is str:
                    return _from_string(args[0], args[1] if len(args) == 2 else None, "StringSignature", None, 1)
                return _string_signature(*args, **kwargs)
            return make_signature(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def __setattr__(cls, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        _forget_compiled(cls)

    def __delattr__(cls, name: str) -> None:
        super().__delattr__(name)
        _forget_compiled(cls)

    @staticmethod
    def _detect_custom_types_from_caller(signature_str: str) -> dict[str, Any] | None:
        """The types named in `signature_str` that only the caller's frames define (DSPy's helper)."""
        try:
            parsed = _parse(signature_str)
        except SignatureSyntaxError:
            return None
        found = find_in_frames(parsed[4], current_frame(1)) if parsed[4] else {}
        return found or None

    def __new__(mcs, signature_name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> type:
        field_order = [name for name, value in namespace.items() if isinstance(value, FieldInfo)]
        raw_annotations = _class_annotations(namespace)
        # Fields written without a type are `str`, and marked as such.
        for name, field in namespace.items():
            if not isinstance(field, FieldInfo):
                continue
            if not name.startswith("__") and name not in raw_annotations:
                raw_annotations[name] = str
                field.json_schema_extra[IS_TYPE_UNDEFINED] = True  # type: ignore[index]
        ordered = {name: raw_annotations[name] for name in field_order if name in raw_annotations}
        ordered.update({k: v for k, v in raw_annotations.items() if k not in ordered})
        namespace["__annotations__"] = ordered
        if sys.version_info >= (3, 14):
            kwargs["__pydantic_reset_parent_namespace__"] = False

        cls = super().__new__(mcs, signature_name, bases, namespace, **kwargs)

        # A derived class without a docstring keeps its parent signature's instructions.
        if cls.__doc__ is None:
            for base in bases:
                if isinstance(base, SignatureMeta):
                    doc = getattr(base, "__doc__", "")
                    if doc != "":
                        cls.__doc__ = doc
        if cls.__doc__ is None:
            cls.__doc__ = _default_instructions(cls.input_fields, cls.output_fields)

        cls._validate_fields()
        for name, field in cls.model_fields.items():
            if "prefix" not in field.json_schema_extra:
                field.json_schema_extra["prefix"] = infer_prefix(name) + ":"
            if "desc" not in field.json_schema_extra:
                field.json_schema_extra["desc"] = f"${{{name}}}"
        return cls

    def _validate_fields(cls) -> None:
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra or {}
            field_type = extra.get("__dspy_field_type")
            if field_type not in ["input", "output"]:
                raise TypeError(
                    f"Field `{name}` in `{cls.__name__}` must be declared with InputField or OutputField, but "
                    f"field `{name}` has `field.json_schema_extra={field.json_schema_extra}`",
                )

    @property
    def instructions(cls) -> str:
        return inspect.cleandoc(getattr(cls, "__doc__", ""))

    @instructions.setter
    def instructions(cls, instructions: str) -> None:
        # A cached class is about to differ from its string: later calls must build a fresh one.
        key = cls.__dict__.get("__turbodspy_cache_key__")
        if key is not None:
            _forget_class(key, cls)
        cls.__doc__ = instructions

    @property
    def input_fields(cls) -> dict[str, FieldInfo]:
        return cls._get_fields_with_type("input")

    @property
    def output_fields(cls) -> dict[str, FieldInfo]:
        return cls._get_fields_with_type("output")

    @property
    def fields(cls) -> dict[str, FieldInfo]:
        return {**cls.input_fields, **cls.output_fields}

    @property
    def signature(cls) -> str:
        """The string form: `"question, context -> answer"`."""
        return f"{', '.join(cls.input_fields)} -> {', '.join(cls.output_fields)}"

    def _get_fields_with_type(cls, field_type: str) -> dict[str, FieldInfo]:
        return dict(cls._fields_with_type_view(field_type))

    def _fields_with_type_view(cls, field_type: str) -> Mapping[str, FieldInfo]:
        """The fields of one type without a copy, for the hot paths inside turbodspy (never to be modified)."""
        # Adapters ask on every call: split the fields once per fields dict (a rebuilt class gets a new one).
        fields = getattr(cls, "__pydantic_fields__", None)
        if fields is None:
            fields = cls.model_fields
        split = cls.__dict__.get("__turbodspy_split_fields__")
        if split is None or split[0] is not fields or split[1] != len(fields):
            by_type: dict[str, dict[str, FieldInfo]] = {"input": {}, "output": {}}
            for name, info in fields.items():
                by_type.setdefault(info.json_schema_extra["__dspy_field_type"], {})[name] = info
            split = (fields, len(fields), by_type)
            type.__setattr__(cls, "__turbodspy_split_fields__", split)
        return split[2].get(field_type, {})

    def __repr__(cls) -> str:
        field_repr = "\n    ".join(f"{name} = Field({field})" for name, field in cls.fields.items())
        return f"{cls.__name__}({cls.signature}\n    instructions={cls.instructions!r}\n    {field_repr}\n)"


def _class_annotations(namespace: dict[str, Any]) -> dict[str, Any]:
    annotations = namespace.get("__annotations__")
    if annotations is not None:
        return annotations
    if sys.version_info >= (3, 14):  # pragma: no cover - PEP 649 lazy annotations
        import annotationlib

        annotate = annotationlib.get_annotate_from_class_namespace(namespace)
        if annotate:
            return annotationlib.call_annotate_function(annotate, format=annotationlib.Format.FORWARDREF)
    return {}


class Signature(BaseModel, metaclass=SignatureMeta):
    """"""

    # No docstring on purpose: it would become the instructions of every signature that sets none.

    @classmethod
    def with_instructions(cls, instructions: str) -> type[Signature]:
        """A new signature with the same fields and `instructions`."""
        return Signature(cls.fields, instructions)

    @classmethod
    def append_instructions(cls, instructions: str) -> type[Signature]:
        """A new signature with the same fields and `instructions` added after a blank line."""
        return Signature(cls.fields, f"{cls.instructions}\n\n{instructions}")

    @classmethod
    def with_updated_fields(cls, name: str, type_: type | None = None, **kwargs: Any) -> type[Signature]:
        """A new signature whose field `name` has `kwargs` merged into its extras (and type `type_`, if given)."""
        fields_copy = deepcopy(cls.fields)
        fields_copy[name].json_schema_extra = {**fields_copy[name].json_schema_extra, **kwargs}
        if type_ is not None:
            fields_copy[name].annotation = type_
        return Signature(fields_copy, cls.instructions)

    @classmethod
    def prepend(cls, name: str, field: FieldInfo, type_: type | None = None) -> type[Signature]:
        """A new signature with `field` first among the inputs or outputs."""
        return cls.insert(0, name, field, type_)

    @classmethod
    def append(cls, name: str, field: FieldInfo, type_: type | None = None) -> type[Signature]:
        """A new signature with `field` last among the inputs or outputs."""
        return cls.insert(-1, name, field, type_)

    @classmethod
    def delete(cls, name: str) -> type[Signature]:
        """A new signature without field `name` (unchanged if there is none)."""
        fields = dict(cls.fields)
        fields.pop(name, None)
        return Signature(fields, cls.instructions)

    @classmethod
    def insert(cls, index: int, name: str, field: FieldInfo, type_: type | None = None) -> type[Signature]:
        """A new signature with `field` at `index` among the inputs or outputs (negative counts from the end)."""
        if type_ is None:
            type_ = field.annotation
        if type_ is None:
            type_ = str
        input_fields = list(cls.input_fields.items())
        output_fields = list(cls.output_fields.items())
        role = field.json_schema_extra["__dspy_field_type"]  # type: ignore[index]
        lst: list[Any] = input_fields if role == "input" else output_fields
        if index < 0:
            index += len(lst) + 1
        if index < 0 or index > len(lst):
            raise ValueError(
                f"Invalid index to insert: {index}, index must be in the range of [{len(lst) - 1}, {len(lst)}] for "
                f"{role} fields, but received: {index}.",
            )
        lst.insert(index, (name, (type_, field)))
        return Signature(dict(input_fields + output_fields), cls.instructions)

    @classmethod
    def equals(cls, other: Any) -> bool:
        """Whether `other` has the same instructions and the same fields with the same extras."""
        if not isinstance(other, type) or not issubclass(other, BaseModel):
            return False
        if cls.instructions != other.instructions:  # type: ignore[attr-defined]
            return False
        mine, theirs = cls.fields, other.fields  # type: ignore[attr-defined]
        for name in mine.keys() | theirs.keys():
            if name not in theirs or name not in mine:
                return False
            if mine[name].json_schema_extra != theirs[name].json_schema_extra:
                return False
        return True

    @classmethod
    def dump_state(cls) -> dict[str, Any]:
        """The instructions and each field's prefix and description, for saving a program."""
        return {
            "instructions": cls.instructions,
            "fields": [
                {"prefix": f.json_schema_extra["prefix"], "description": f.json_schema_extra["desc"]}
                for f in cls.fields.values()
            ],
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> type[Signature]:
        """A copy of this signature with the instructions, prefixes and descriptions from `dump_state`."""
        copy = Signature(deepcopy(cls.fields), cls.instructions)
        copy.instructions = state["instructions"]
        for field, saved in zip(copy.fields.values(), state["fields"], strict=False):
            field.json_schema_extra["prefix"] = saved["prefix"]
            field.json_schema_extra["desc"] = saved["description"]
        return copy


build.install_deferred(Signature)
# Names pydantic warns about (they shadow attributes of the base), plus the reserved ones.
_SHADOWED = frozenset(dir(Signature)) | frozenset(dir(SignatureMeta)) | _RESERVED


def ensure_signature(signature: str | type[Signature] | None, instructions: str | None = None) -> Any:
    """`signature` as a Signature class: strings are parsed, classes pass through, None stays None."""
    if signature is None:
        return None
    if isinstance(signature, str):
        return _from_string(signature, instructions, "StringSignature", None, 1)
    if instructions is not None:
        raise ValueError("Don't specify instructions when initializing with a Signature")
    return signature


def make_signature(
    signature: str | dict[str, Any],
    instructions: str | None = None,
    signature_name: str = "StringSignature",
    custom_types: dict[str, type] | None = None,
) -> type[Signature]:
    """A new Signature class from a string (`"a, b: int -> c"`) or a dict of name -> (type, FieldInfo).

    `custom_types` maps type names in the string to types (`{"MyType": MyType}`). Without instructions the
    default is "Given the fields `a`, `b`, produce the fields `c`."
    """
    if isinstance(signature, str):
        return _from_string(signature, instructions, signature_name, custom_types, None)
    fixed: dict[str, tuple[Any, FieldInfo]] = {}
    for name, type_field in signature.items():
        if not isinstance(name, str):
            raise ValueError(f"Field names must be strings, but received: {name}.")
        if isinstance(type_field, FieldInfo):
            type_, field = type_field.annotation, type_field
        else:
            if not isinstance(type_field, tuple):
                raise ValueError(f"Field values must be tuples, but received: {type_field}.")
            type_, field = type_field
        if type_ is None:
            type_ = str
        if not isinstance(type_, _FIELD_TYPE_CLASSES):
            raise ValueError(f"Field types must be types, but received: {type_} of type {type(type_)}.")
        if not isinstance(field, FieldInfo):
            raise ValueError(f"Field values must be Field instances, but received: {field}.")
        fixed[name] = (type_, field)
    fields = build.fields_from_dict(fixed, _SHADOWED) if build.ENABLED else None
    if fields is None:
        if instructions is None:
            # Field roles are checked by building the class; the instructions then name its fields.
            cls = _create(signature_name, "", fixed)
            cls.__doc__ = _default_instructions(cls.input_fields, cls.output_fields)
            return cls
        return _create(signature_name, instructions, fixed)
    if instructions is None:
        roles = [(name, f.json_schema_extra["__dspy_field_type"]) for name, f in fields.items()]  # type: ignore[index]
        instructions = _default_instructions(
            [n for n, role in roles if role == "input"], [n for n, role in roles if role == "output"]
        )
    annotations = {name: type_ for name, (type_, _) in fixed.items()}
    cls = build.fast_class(SignatureMeta, Signature, signature_name, _MODULE, instructions, fields, None, annotations)
    # As SignatureMeta.__new__ completes every field.
    for name, field in fields.items():
        extra: dict[str, Any] = field.json_schema_extra  # type: ignore[assignment]
        if "prefix" not in extra:
            extra["prefix"] = infer_prefix(name) + ":"
        if "desc" not in extra:
            extra["desc"] = f"${{{name}}}"
    return cls


def _create(name: str, doc: str, fields: dict[str, tuple[Any, FieldInfo]]) -> Any:
    return create_model(name, __base__=Signature, __doc__=doc, __module__=_MODULE, **fields)  # type: ignore[call-overload]


def _string_signature(
    signature: str,
    instructions: str | None = None,
    signature_name: str = "StringSignature",
    custom_types: dict[str, Any] | None = None,
) -> Any:
    # `Signature(...)` with a string: unknown type names are looked up in the caller's frames.
    return _from_string(signature, instructions, signature_name, custom_types, 2 if custom_types is None else None)


def _parse(signature: str) -> tuple[tuple, tuple, tuple[str, ...], str, tuple[str, ...]]:
    """Inputs, outputs, type names, default instructions, and the names looked up in the caller's frames."""
    parsed = _parsed.get(signature)
    if parsed is None:
        inputs, outputs, names, default = parse_signature(signature)
        free = _free_names.get(names)
        if free is None:
            free = tuple(n for n in names if needs_caller(n))
            if len(_free_names) >= _CACHE_LIMIT:
                _evict_oldest(_free_names)
            _free_names[names] = free
        parsed = (inputs, outputs, names, default, free)
    return parsed


def _from_string(
    signature: str, instructions: str | None, name: str, custom_types: dict[str, Any] | None, caller: int | None
) -> Any:
    """The class for a signature string; `caller` is how many frames up to look for unknown type names."""
    if custom_types is None:
        # Strings whose types need nothing from the caller are cached under this short key only.
        short = (signature, instructions, name)
        try:
            hit = _cached_class(short)
        except TypeError:  # unhashable instructions: build without the cache
            return _build(signature, _parse(signature), instructions, name, None, None)
        if hit is not None:
            return hit
    parsed = _parse(signature)
    custom = custom_types
    if custom is None and caller is not None and parsed[4]:
        custom = find_in_frames(parsed[4], current_frame(caller + 1)) or None
    if custom_types is None and not parsed[4]:
        key: tuple | None = short
    else:
        # The class depends on what each name resolves to: the key holds those objects.
        custom_map = custom or {}
        key = (signature, instructions, name, bool(custom), tuple(custom_map.get(n, _MISSING) for n in parsed[2]))
        try:
            hit = _cached_class(key)
        except TypeError:  # unhashable custom types
            key, hit = None, None
        if hit is not None:
            return hit
        if signature not in _parsed:
            if len(_parsed) >= _CACHE_LIMIT:
                _evict_oldest(_parsed)
            _parsed[signature] = parsed
    cls = _build(signature, parsed, instructions, name, custom, key)
    if key is not None:
        _cache_class(key, cls)
    return cls


def _build(
    signature: str,
    parsed: tuple,
    instructions: str | None,
    name: str,
    custom: dict[str, Any] | None,
    key: tuple | None,
) -> Any:
    """Builds the class for a parsed string: directly when every field is plain, else through pydantic."""
    inputs, outputs = parsed[0], parsed[1]
    if instructions is None:
        instructions = parsed[3]
    fast = build.ENABLED
    model_field = build.model_field
    plain = build.plain_annotation
    static_types = _static_types
    plain_static = _plain_static_types
    fields: dict[str, Any] = {}
    annotations: dict[str, Any] = {}
    for role, group in (("input", inputs), ("output", outputs)):
        for field_name, prefix, text, tree, position in group:
            if field_name in _SHADOWED:
                if field_name in _RESERVED:
                    raise signature_error(
                        signature,
                        f"field name {field_name!r} is reserved (it is part of the Signature API); rename it",
                        position,
                    )
                fast = False
            if tree is None:
                annotation: Any = str
            elif custom is None and (annotation := plain_static.get(text)) is not None:
                pass  # resolved, checked and plain before: nothing more to do
            else:
                # Types named only from builtins and typing are cached by their text.
                annotation = static_types.get(text) if custom is None else None
                if annotation is None:
                    annotation = resolve_type(signature, text, tree, custom)
                if annotation is None:
                    annotation = str
                elif not isinstance(annotation, _FIELD_TYPE_CLASSES):
                    raise signature_error(
                        signature,
                        f"Field types must be types, but received: {annotation} of type {type(annotation)}",
                        position,
                    )
                elif not plain(annotation):
                    fast = False
                elif custom is None and text in static_types:
                    if len(plain_static) >= _CACHE_LIMIT:
                        _evict_oldest(plain_static)
                    plain_static[text] = annotation
            annotations[field_name] = annotation
            if not fast:
                continue
            if prefix is None:
                prefix = infer_prefix(field_name) + ":"
            if role == "input":
                extra = {
                    IS_TYPE_UNDEFINED: tree is None,
                    "__dspy_field_type": "input",
                    "prefix": prefix,
                    "desc": f"${{{field_name}}}",
                }
            else:
                extra = {"__dspy_field_type": "output", "prefix": prefix, "desc": f"${{{field_name}}}"}
            fields[field_name] = model_field(annotation, extra)
    if fast:
        return build.fast_class(SignatureMeta, Signature, name, _MODULE, instructions, fields, key, annotations)
    fixed: dict[str, tuple[Any, FieldInfo]] = {}
    resolved = list(annotations.values())
    for field, annotation in zip(inputs, resolved, strict=False):
        fixed[field[0]] = (annotation, InputField(IS_TYPE_UNDEFINED=field[3] is None))
    for field, annotation in zip(outputs, resolved[len(inputs) :], strict=True):
        fixed[field[0]] = (annotation, OutputField())
    cls = _create(name, instructions, fixed)
    if key is not None:
        type.__setattr__(cls, "__turbodspy_cache_key__", key)
    return cls


def infer_prefix(attribute_name: str) -> str:
    """A human-readable prefix from a field name: "camelCaseText" -> "Camel Case Text", "text2number" ->
    "Text 2 Number", "HTMLParser" -> "HTML Parser"."""
    # camelCase -> camel_Case, then consecutive capitals and letter/digit boundaries get underscores.
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", attribute_name)
    name = re.sub("([a-z0-9])([A-Z])", r"\1_\2", name)
    name = re.sub(r"([a-zA-Z])(\d)", r"\1_\2", name)
    name = re.sub(r"(\d)([a-zA-Z])", r"\1_\2", name)
    # Acronyms stay as written; other words are capitalised.
    return " ".join(word if word.isupper() else word.capitalize() for word in name.split("_"))
