"""Turns the type expressions that the Rust parser returns into Python types, looking names up as DSPy does.

Names resolve from `typing`, a few builtins, importable modules, an explicit `custom_types` mapping, or the
caller's frames (for `Signature("x: MyModel -> y")`). Expressions resolved only from fixed namespaces are
cached by their text.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import logging
import sys
import types
import typing
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from turbodspy._core import signature_error

# Tags of the tuple trees from `_core.parse_signature` (see `_core.pyi`).
NAME, ATTRIBUTE, SUBSCRIPT, UNION, TUPLE, CONSTANT, INT, FLOAT, CALL = range(9)

_NONE_TYPE = type(None)
_TYPING = typing.__dict__
_BUILTIN_TYPES = {
    t.__name__: t for t in (int, str, float, bool, list, tuple, dict, set, frozenset, complex, bytes, bytearray)
}
_BUILTIN_NAMES = builtins.__dict__
_MAX_FRAMES = 100

# Text of a type expression -> its type, for expressions whose names all come from fixed namespaces.
_static_types: OrderedDict[str, Any] = OrderedDict()
_STATIC_TYPES_LIMIT = 4096

_logger = logging.getLogger("turbodspy")


class _Names:
    """DSPy's name table: `typing` plus `custom_types`, or `typing` plus `NoneType` when there are none."""

    __slots__ = ("custom", "imported")

    def __init__(self, custom: Mapping[str, Any] | None):
        self.custom = custom or None
        self.imported: dict[str, Any] = {}

    def lookup(self, name: str) -> tuple[bool, Any]:
        custom = self.custom
        if custom is not None and name in custom:
            return True, custom[name]
        if name in _TYPING:
            return True, _TYPING[name]
        if custom is None and name == "NoneType":
            return True, _NONE_TYPE
        if name in self.imported:
            return True, self.imported[name]
        return False, None


def needs_caller(name: str) -> bool:
    """Whether `name` is looked up in the caller's frames (it is neither a `typing` name nor a builtin)."""
    return name not in _TYPING and name not in _BUILTIN_NAMES


def find_in_frames(names: Iterable[str], frame: types.FrameType | None) -> dict[str, Any]:
    """Looks `names` up in `frame` and its callers (locals, then globals), nearest frame first."""
    needed = set(names)
    found: dict[str, Any] = {}
    count = 0
    try:
        while frame is not None and needed and count < _MAX_FRAMES:
            count += 1
            f_locals = frame.f_locals
            f_globals = frame.f_globals
            for name in list(needed):
                if name in f_locals:
                    found[name] = f_locals[name]
                    needed.discard(name)
                elif name in f_globals:
                    found[name] = f_globals[name]
                    needed.discard(name)
            frame = frame.f_back
        if needed and count >= _MAX_FRAMES:
            _logger.warning(
                "Reached maximum frame search depth (%d) while looking for types: %s. "
                "Consider providing custom_types explicitly to Signature.",
                _MAX_FRAMES,
                needed,
            )
    finally:
        del frame
    return found


def resolve_type(signature: str, text: str, tree: tuple, custom: Mapping[str, Any] | None) -> Any:
    """The Python type for one parsed type expression of `signature`.

    Raises `SignatureSyntaxError` naming the expression and its position when a name is unknown or the
    expression does not make a type.
    """
    static = not custom
    if static:
        cached = _static_types.get(text)
        if cached is not None:
            return cached
    names = _Names(custom)
    value = _resolve(signature, tree, names)
    if static and not names.imported:
        if len(_static_types) >= _STATIC_TYPES_LIMIT:
            with contextlib.suppress(KeyError):  # another thread emptied it first
                _static_types.popitem(last=False)
        _static_types[text] = value
    return value


def _resolve(signature: str, node: tuple, names: _Names) -> Any:
    tag = node[0]
    if tag == NAME:
        return _resolve_name(signature, node[1], node[2], names)
    if tag == ATTRIBUTE:
        base = _resolve(signature, node[1], names)
        attr = node[2]
        if hasattr(base, attr):
            return getattr(base, attr)
        if node[1][0] == NAME:
            ok, value = names.lookup(f"{node[1][1]}.{attr}")
            if ok:
                return value
        raise signature_error(signature, f"Unknown attribute: {attr} on {base}", node[3])
    if tag == SUBSCRIPT:
        base = _resolve(signature, node[1], names)
        arg_nodes = node[2]
        # `x[(a, b)]` is `x[a, b]`, as in Python.
        if len(arg_nodes) == 1 and arg_nodes[0][0] == TUPLE:
            arg_nodes = arg_nodes[0][1]
        args = tuple(_resolve(signature, arg, names) for arg in arg_nodes)
        try:
            if base is typing.Union:
                return typing.Union[args]  # noqa: UP007 (DSPy builds typing.Union)
            if base is typing.Optional:
                if len(args) != 1:
                    raise ValueError("Optional must have exactly one type argument")
                return typing.Optional[args[0]]  # noqa: UP045
            return base[args]
        except (TypeError, ValueError) as exc:
            raise signature_error(signature, f"{base!r} cannot take {_show(args)}: {exc}", node[3]) from exc
    if tag == UNION:
        left = _resolve(signature, node[1], names)
        right = _resolve(signature, node[2], names)
        # `X | None` is `Optional[X]`, as DSPy builds it.
        if right is _NONE_TYPE:
            return typing.Optional[left]  # noqa: UP045
        if left is _NONE_TYPE:
            return typing.Optional[right]  # noqa: UP045
        return typing.Union[left, right]  # noqa: UP007
    if tag == TUPLE:
        return tuple(_resolve(signature, item, names) for item in node[1])
    if tag == CONSTANT:
        return node[1]
    if tag in (INT, FLOAT):
        try:
            return int(node[1], 0) if tag == INT else float(node[1])
        except ValueError as exc:
            raise signature_error(signature, f"{node[1]!r} is not a valid number: {exc}") from exc
    if tag == CALL:
        kwargs = {}
        for key, value in node[2]:
            kwargs[key] = value[1] if value[0] == CONSTANT else _resolve(signature, value, names)
        return pydantic.Field(**kwargs)
    raise signature_error(signature, f"unsupported type expression {node!r}")


def _resolve_name(signature: str, name: str, position: int, names: _Names) -> Any:
    ok, value = names.lookup(name)
    if ok:
        return value
    builtin = _BUILTIN_TYPES.get(name)
    if builtin is not None:
        return builtin
    # Module-qualified types such as `pydantic.BaseModel` name a module first.
    try:
        module = importlib.import_module(name)
    except ImportError:
        pass
    else:
        names.imported[name] = module
        return module
    raise signature_error(
        signature,
        f"Unknown name: {name}; it is not a builtin, a typing name or an importable module. Define it in the "
        f"module that creates the signature, or pass custom_types={{{name!r}: {name}}}",
        position,
    )


def _show(args: tuple) -> str:
    return "[" + ", ".join(getattr(a, "__name__", repr(a)) for a in args) + "]"


def current_frame(depth: int) -> types.FrameType | None:
    """The frame `depth` levels above the caller, or None where frames are not available."""
    try:
        return sys._getframe(depth + 1)
    except (AttributeError, ValueError):
        return None
