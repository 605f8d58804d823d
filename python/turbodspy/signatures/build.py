"""Builds Signature classes without pydantic's class-construction pass, for fields that need none of it.

pydantic's `create_model` spends about a quarter of a millisecond collecting fields and compiling a validator
per class. A signature built from a string has plain fields (a type and DSPy's extras), so this module sets
the class up in the state pydantic's metaclass would leave it in, and defers the validator, serializer, core
schema and `__signature__` until something asks for them (the class is then completed by `model_rebuild`,
exactly as a `defer_build` model is). Anything unusual (annotated types, names that shadow model attributes,
an unknown pydantic version) goes through pydantic itself.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from typing_inspection.introspection import AnnotationSource

# The FieldInfo layout this module knows how to fill; any other pydantic takes the slow path.
_KNOWN_SLOTS = (
    "annotation",
    "default",
    "default_factory",
    "alias",
    "alias_priority",
    "validation_alias",
    "serialization_alias",
    "title",
    "field_title_generator",
    "description",
    "examples",
    "exclude",
    "exclude_if",
    "discriminator",
    "deprecated",
    "json_schema_extra",
    "frozen",
    "validate_default",
    "repr",
    "init",
    "init_var",
    "kw_only",
    "metadata",
    "_attributes_set",
    "_qualifiers",
    "_complete",
    "_original_assignment",
    "_original_annotation",
    "_final",
)

# Class attributes pydantic's metaclass sets and that the lazy descriptors below stand in for.
_DEFERRED = ("__pydantic_core_schema__", "__pydantic_validator__", "__pydantic_serializer__", "__signature__")

# Class attributes a fast class shares with its base (their values are the same for every signature).
_INHERITED = (
    "__pydantic_decorators__",
    "__pydantic_generic_metadata__",
    "__pydantic_computed_fields__",
    "__class_vars__",
    "__private_attributes__",
    "__pydantic_custom_init__",
    "__pydantic_post_init__",
    "__pydantic_extra_info__",
)

# Top-level annotation forms pydantic unpacks into field metadata or qualifiers: these need pydantic.
_SPECIAL_ORIGINS = {typing.Annotated, typing.ClassVar, typing.Final}
for _name in ("Required", "NotRequired", "ReadOnly", "InitVar"):
    if hasattr(typing, _name):
        _SPECIAL_ORIGINS.add(getattr(typing, _name))

_new_field = FieldInfo.__new__
_type_new = type.__new__
_NO_ABSTRACT_METHODS: frozenset[str] = frozenset()

# The per-class state of ABCMeta (pydantic's metaclass derives from it), as `_abc_init` creates it.
_abc_data = type(BaseModel.__dict__["_abc_impl"])

ENABLED = tuple(FieldInfo.__slots__) == _KNOWN_SLOTS


def model_field(annotation: Any, extra: dict[str, Any]) -> FieldInfo:
    """The FieldInfo pydantic makes for `name: annotation = Field(json_schema_extra=extra)` in a class."""
    f = _new_field(FieldInfo)
    f.annotation = annotation
    f.default = PydanticUndefined
    f.default_factory = None
    f.alias = None
    f.alias_priority = None
    f.validation_alias = None
    f.serialization_alias = None
    f.title = None
    f.field_title_generator = None
    f.description = None
    f.examples = None
    f.exclude = None
    f.exclude_if = None
    f.discriminator = None
    f.deprecated = None
    f.json_schema_extra = extra
    f.frozen = None
    f.validate_default = None
    f.repr = True
    f.init = None
    f.init_var = None
    f.kw_only = None
    f.metadata = []
    f._attributes_set = {"annotation": annotation, "json_schema_extra": extra}
    f._qualifiers = set()
    f._complete = True
    # pydantic keeps the assigned `Field(...)` here only to recreate fields of generic or not-yet-resolvable
    # models; a signature's fields are neither, so there is nothing to recreate (as for un-assigned fields).
    f._original_assignment = PydanticUndefined
    f._original_annotation = annotation
    f._final = True
    return f


def plain_annotation(annotation: Any) -> bool:
    """Whether pydantic would take `annotation` as the field's type as is (no metadata, no qualifiers)."""
    kind = type(annotation)
    if kind is type or kind is types.GenericAlias:  # classes, and `list[...]`-style builtin generics
        return True
    try:
        return typing.get_origin(annotation) not in _SPECIAL_ORIGINS and annotation not in _SPECIAL_ORIGINS
    except TypeError:  # unhashable: not one of the special forms
        return True


class _CompleteOnAccess:
    """Stands in, on the base class, for one attribute pydantic builds per model class.

    A class built by `fast_class` has none of its own; the first access completes it with `model_rebuild`
    (which stores the real attribute on that class). Every other class gets the base's own value.
    """

    __slots__ = ("attr", "value")

    def __init__(self, attr: str, value: Any):
        self.attr = attr
        self.value = value

    def __get__(self, instance: Any, owner: type) -> Any:
        if owner is not None and "__turbodspy_deferred__" in owner.__dict__:
            owner.model_rebuild(raise_errors=True, _parent_namespace_depth=2)
            if self.attr in owner.__dict__:
                return getattr(instance if instance is not None else owner, self.attr)
        get = getattr(type(self.value), "__get__", None)
        return get(self.value, instance, owner) if get is not None else self.value


def install_deferred(base: type) -> None:
    """Puts the stand-ins for `_DEFERRED` attributes on `base` (the Signature class), keeping its values.

    Fast classes stay off (`ENABLED` false) unless `base` holds the values they inherit.
    """
    global ENABLED
    decorators = base.__dict__.get("__pydantic_decorators__")
    inherited_ok = (
        decorators is not None
        and not any(getattr(decorators, f.name) for f in dataclasses.fields(decorators))
        and base.__dict__.get("__pydantic_generic_metadata__") == {"origin": None, "args": (), "parameters": ()}
        and base.__dict__.get("__pydantic_computed_fields__") == {}
        and base.__dict__.get("__class_vars__") == set()
        and base.__dict__.get("__private_attributes__") == {}
        and base.__dict__.get("__pydantic_custom_init__") is False
        and base.__dict__.get("__pydantic_post_init__", 0) is None
        and base.__dict__.get("__pydantic_extra_info__", 0) is None
        and all(attr in base.__dict__ for attr in _DEFERRED)
    )
    ENABLED = ENABLED and inherited_ok
    if not ENABLED:
        return
    for attr in _DEFERRED:
        value = base.__dict__[attr]
        type.__setattr__(base, attr, _CompleteOnAccess(attr, value))


def _has_unresolved_parts(annotation: Any) -> bool:
    """Whether pydantic would evaluate part of `annotation` (forward references, strings, type variables)."""
    if isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar)):
        return True
    if typing.get_origin(annotation) is typing.Literal:  # its arguments are values, not types
        return False
    return any(_has_unresolved_parts(arg) for arg in typing.get_args(annotation) if not isinstance(arg, (int, bool)))


def fields_from_dict(fixed: dict[str, tuple[Any, FieldInfo]], shadowed: frozenset[str]) -> dict[str, FieldInfo] | None:
    """The FieldInfos pydantic's `create_model` would make for `{name: (type, FieldInfo)}`, or None when a
    field needs more of pydantic than a plain merge (see the checks below)."""
    fields: dict[str, FieldInfo] = {}
    for name, (annotation, field) in fixed.items():
        extra = field.json_schema_extra
        if (
            name in shadowed
            or name.startswith("_")
            or type(field) is not FieldInfo
            or type(extra) is not dict
            or extra.get("__dspy_field_type") not in ("input", "output")
            or field.field_title_generator is not None
            or field.deprecated is not None
            or inspect.ismethoddescriptor(field.default)
            or not plain_annotation(annotation)
            or _has_unresolved_parts(annotation)
        ):
            return None
        # As `collect_model_fields` does for an annotated attribute with a `Field(...)` value.
        merged = FieldInfo.from_annotated_attribute(annotation, field, _source=AnnotationSource.CLASS)
        merged._original_assignment = field
        merged._original_annotation = annotation
        fields[name] = merged
    return fields


def fast_class(
    meta: type,
    base: type,
    name: str,
    module: str,
    doc: str,
    fields: dict[str, FieldInfo],
    cache_key: Any = None,
    annotations: dict[str, Any] | None = None,
) -> type:
    """A subclass of `base` with `fields`, in the state `create_model(..., __config__=defer_build)` leaves it.

    `fields` are complete FieldInfos (see `model_field`); `doc` becomes the instructions.
    """
    # Attributes whose value equals the base's (empty decorators, no private attributes or class variables,
    # no generic parameters, default init and post-init) are inherited rather than copied.
    # `__qualname__` is left to default to `name` (the same value, set without a namespace entry).
    namespace = {
        "__module__": module,
        "__doc__": doc,
        "__annotations__": annotations if annotations is not None else {k: f.annotation for k, f in fields.items()},
        "model_config": {},
        "__pydantic_setattr_handlers__": {},
        "__pydantic_complete__": False,
        "__pydantic_fields__": fields,
        "__turbodspy_deferred__": True,
        # What ABCMeta.__new__ (`_abc_init`) gives a class without abstract methods, set before creation:
        # assigning them afterwards would invalidate the type's caches.
        "__abstractmethods__": _NO_ABSTRACT_METHODS,
        "_abc_impl": _abc_data(),
    }
    if cache_key is not None:
        namespace["__turbodspy_cache_key__"] = cache_key
    return _type_new(meta, name, (base,), namespace)
