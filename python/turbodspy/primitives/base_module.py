"""`BaseModule`: walking a program's parameters and sub-modules, copying it, and saving its state as JSON.

State is saved as JSON only: turbodspy never writes or reads pickle, so a saved program cannot run code when
loaded. LM settings are saved without API keys.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Keys that must never reach a saved file, wherever they appear in an LM's state.
_SECRET_KEYS = frozenset({"api_key", "api_token", "token", "secret", "password", "aws_secret_access_key"})


class BaseModule:
    """The structural half of `Module`: parameters, sub-modules, copies and saved state."""

    def named_parameters(self) -> list[tuple[str, Any]]:
        """(name, parameter) for every `Parameter` in this module, its sub-modules, and lists/dicts of them.

        A sub-module marked compiled (`_compiled = True`) is frozen: its parameters are not listed.
        """
        from turbodspy.predict.parameter import Parameter
        from turbodspy.primitives.module import Module

        visited: set[int] = set()
        found: list[tuple[str, Any]] = []

        def add(name: str, value: Any) -> None:
            if isinstance(value, Parameter):
                if id(value) not in visited:
                    visited.add(id(value))
                    found.append((name, value))
            elif isinstance(value, Module) and not getattr(value, "_compiled", False):
                for sub_name, param in value.named_parameters():
                    add(f"{name}.{sub_name}", param)

        if isinstance(self, Parameter):
            add("self", self)
        for name, value in self.__dict__.items():
            if isinstance(value, (Parameter, Module)):
                add(name, value)
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    add(f"{name}[{i}]", item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    add(f"{name}['{key}']", item)
        return found

    def named_sub_modules(self, type_: type | None = None, skip_compiled: bool = False) -> Iterator[tuple[str, Any]]:
        """Breadth-first (name, module) for every sub-module reachable from self (each once), self included."""
        type_ = type_ or BaseModule
        queue: deque[tuple[str, Any]] = deque([("self", self)])
        seen = {id(self)}

        def push(name: str, item: Any) -> None:
            if id(item) not in seen:
                seen.add(id(item))
                queue.append((name, item))

        while queue:
            name, item = queue.popleft()
            if isinstance(item, type_):
                yield name, item
            if isinstance(item, BaseModule):
                if skip_compiled and getattr(item, "_compiled", False):
                    continue
                for sub_name, sub_item in item.__dict__.items():
                    push(f"{name}.{sub_name}", sub_item)
            elif isinstance(item, (list, tuple)):
                for i, sub_item in enumerate(item):
                    push(f"{name}[{i}]", sub_item)
            elif isinstance(item, dict):
                for key, sub_item in item.items():
                    push(f"{name}[{key}]", sub_item)

    def parameters(self) -> list[Any]:
        return [param for _, param in self.named_parameters()]

    def deepcopy(self) -> Any:
        """A deep copy; attributes that cannot be deep-copied (clients, locks) are shallow-copied or shared."""
        try:
            return copy.deepcopy(self)
        except Exception:
            pass
        new = self.__class__.__new__(self.__class__)
        for attr, value in self.__dict__.items():
            if isinstance(value, BaseModule):
                new.__dict__[attr] = value.deepcopy()
                continue
            try:
                new.__dict__[attr] = copy.deepcopy(value)
            except Exception:
                logger.warning(
                    f"Failed to deep copy attribute '{attr}' of {self.__class__.__name__}, "
                    "falling back to shallow copy or reference copy."
                )
                try:
                    new.__dict__[attr] = copy.copy(value)
                except Exception:
                    new.__dict__[attr] = value
        return new

    def reset_copy(self) -> Any:
        """A deep copy with every parameter reset (no demos, no per-module LM)."""
        new = self.deepcopy()
        for param in new.parameters():
            param.reset()
        return new

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        return {name: param.dump_state(json_mode=json_mode) for name, param in self.named_parameters()}

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> None:
        """Restore every parameter from `state`; a copy is loaded first, so a bad state leaves self untouched."""
        from turbodspy.primitives.module import Module

        def apply(module: BaseModule) -> None:
            for name, param in module.named_parameters():
                if name not in state:
                    raise ValueError(
                        f"The saved state has no entry for parameter '{name}' (it has: {sorted(state)}). "
                        "Load a state saved from a program with the same structure."
                    )
                if isinstance(param, Module):
                    param.load_state(state[name], allow_unsafe_lm_state=allow_unsafe_lm_state)
                else:
                    param.load_state(state[name])

        apply(self.deepcopy())
        apply(self)

    def save(self, path: str | Path, save_program: bool = False, modules_to_serialize: list | None = None) -> None:
        """Write the program's state (demos, signatures, LM settings without secrets) to a `.json` file."""
        path = Path(path)
        if save_program or path.suffix == ".pkl":
            raise ValueError(
                "turbodspy saves program state as JSON only (pickle files can run code when loaded). "
                f"Save to a path ending in `.json`, e.g. `program.save('program.json')`; got: {path}"
            )
        if path.suffix != ".json":
            raise ValueError(f"`path` must end with `.json`, but received: {path}")
        state = self.dump_state()
        for param_state in state.values():
            if isinstance(param_state, dict) and isinstance(param_state.get("lm"), dict):
                param_state["lm"] = _without_secrets(param_state["lm"])
        state["metadata"] = {"dependency_versions": _dependency_versions()}
        try:
            text = json.dumps(state, indent=2, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise RuntimeError(
                f"Failed to save state to {path}: {e}. The program's state holds a value that is not JSON "
                "serializable (demos must hold strings, numbers, lists, dicts or pydantic models)."
            ) from e
        path.write_text(text + "\n", encoding="utf-8")

    def load(self, path: str | Path, allow_pickle: bool = False, allow_unsafe_lm_state: bool = False) -> Any:
        """Load state saved by `save` (or by DSPy's `.json` save) into this program, in place."""
        path = Path(path)
        if path.suffix != ".json":
            raise ValueError(
                f"`path` must end with `.json`, but received: {path}. turbodspy never loads pickle files; "
                "save the program's state as JSON with `program.save('program.json')`."
            )
        state = json.loads(path.read_text(encoding="utf-8"))
        saved = (state.get("metadata") or {}).get("dependency_versions", {})
        current = _dependency_versions()
        for key in ("python",):
            if key in saved and saved[key] != current[key]:
                logger.warning(
                    f"There is a mismatch of {key} version between saved model and current environment. "
                    f"You saved with `{key}=={saved[key]}`, but now you have `{key}=={current[key]}`."
                )
        self.load_state(state, allow_unsafe_lm_state=allow_unsafe_lm_state)
        return self


def _dependency_versions() -> dict[str, str]:
    from turbodspy import __version__

    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "turbodspy": __version__}


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items() if k not in _SECRET_KEYS}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value
