"""`Predict`: the basic module. Formats a signature, demos and inputs with the adapter, calls the LM, parses.

`Predict(signature, **config)`: `config` are defaults for the LM call (`temperature`, `n`, `rollout_id`, ...),
overridden per call by `predict(..., config={...})`. The LM is `lm=` given to the call, else the module's own
`self.lm` (`set_lm`), else `settings.lm`; the adapter is `settings.adapter`, else ChatAdapter.
"""

from __future__ import annotations

import copy
import logging
import random
import types
from typing import Any, Literal, Union, get_args, get_origin

from turbodspy.adapters.base import Adapter
from turbodspy.clients.base_lm import BaseLM
from turbodspy.predict.parameter import Parameter
from turbodspy.primitives.module import Module
from turbodspy.primitives.prediction import Prediction
from turbodspy.settings import current, current_overrides, global_config

logger = logging.getLogger(__name__)

UNSAFE_LM_STATE_KEYS = frozenset({"api_base", "base_url", "model_list"})
# The keywords a call of `Predict` takes for itself rather than as input fields.
_CALL_KEYWORDS = frozenset({"new_signature", "signature", "demos", "config", "lm", "prediction"})
IS_TYPE_UNDEFINED = "IS_TYPE_UNDEFINED"

_default_adapter: Any = None
_ADAPTER_CALL = Adapter.__call__


def _adapter() -> Any:
    adapter = current().get("adapter")
    if adapter is not None:
        return adapter
    return _default_chat_adapter()


def _default_chat_adapter() -> Any:
    global _default_adapter
    if _default_adapter is None:
        from turbodspy.adapters import ChatAdapter

        _default_adapter = ChatAdapter()
    return _default_adapter


class _InputPlan:
    """What a call needs to know about a signature's input fields, worked out once per signature."""

    __slots__ = ("allows_none", "checked", "defaults", "names", "plain", "signature")

    def __init__(self, signature: Any) -> None:
        from pydantic_core import PydanticUndefined

        self.signature = signature
        fields = signature.input_fields
        self.names = frozenset(fields)
        # No input field shares a name with a keyword `Predict` takes itself, so a call with only input fields
        # needs none of the keyword handling.
        self.plain = self.names.isdisjoint(_CALL_KEYWORDS)
        self.defaults = {k: f.default for k, f in fields.items() if f.default is not PydanticUndefined}
        self.allows_none = frozenset(k for k, f in fields.items() if _allows_none(f.annotation))
        self.checked = [
            (k, f.annotation)
            for k, f in fields.items()
            if not (f.json_schema_extra or {}).get(IS_TYPE_UNDEFINED, False) and f.annotation is not Any
        ]


class Predict(Module, Parameter):
    """Map a signature's inputs to its outputs with one LM call: `Predict("question -> answer")(question=...)`."""

    def __init__(self, signature: Any, callbacks: list | None = None, **config: Any) -> None:
        from turbodspy.signatures import ensure_signature

        super().__init__(callbacks=callbacks)
        self.stage = random.randbytes(8).hex()
        self.signature = ensure_signature(signature)
        self.fields: dict[str, Any] = {}
        self.config = config
        self._plan: _InputPlan | None = None
        self.reset()

    def reset(self) -> None:
        """Forget what was learned: per-module LM, traces, train set and demos."""
        self.lm = None
        self.traces: list[Any] = []
        self.train: list[Any] = []
        self.demos: list[Any] = []

    # -- state --------------------------------------------------------------------------------------------------

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {"traces": self.traces, "train": self.train, "demos": []}
        for demo in self.demos:
            demo = demo.copy()
            for field in demo:
                demo[field] = serialize_object(demo[field])
            state["demos"].append(demo if isinstance(demo, dict) or not json_mode else demo.toDict())
        state["signature"] = self.signature.dump_state()
        if self.fields:
            state["fields"] = copy.deepcopy(self.fields)
        state["lm"] = self.lm.dump_state() if self.lm else None
        return state

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> Predict:
        """Restore demos, signature texts and LM from `dump_state()`; endpoint keys only when trusted."""
        if "extended_signature" in state:
            raise NotImplementedError("Loading extended_signature is no longer supported in DSPy 2.6+")
        signature = self.signature.load_state(state["signature"])
        for name, value in state.items():
            if name not in ("signature", "extended_signature", "lm", "fields"):
                setattr(self, name, value)
        self.signature = signature
        self.fields = copy.deepcopy(state.get("fields", {}))
        lm_state = state.get("lm")
        if lm_state:
            lm_state = _sanitize_lm_state(lm_state, allow_unsafe_lm_state)
            self.lm = BaseLM.load_state(lm_state, allow_custom_lm_class=allow_unsafe_lm_state)
        else:
            self.lm = None
        return self

    # -- calling ------------------------------------------------------------------------------------------------

    def _positional_args_error(self) -> str:
        names = list(self.signature.input_fields)
        return (
            "Positional arguments are not allowed when calling `dspy.Predict`, must use keyword arguments "
            f"that match your signature input fields: '{', '.join(names)}'. For example: "
            f"`predict({names[0] if names else 'input'}=input_value, ...)`."
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise ValueError(self._positional_args_error())
        # Module.__call__, inlined: this is the hottest path of a cached batch run.
        config = current_overrides() or global_config
        if config["callbacks"] or self.callbacks:
            return self._call_observed(**kwargs)
        return self._run(config, (), kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise ValueError(self._positional_args_error())
        # Module.acall, inlined: one coroutine less per call of an async batch.
        config = current_overrides() or global_config
        if config["callbacks"] or self.callbacks:
            return await self._acall_observed(**kwargs)
        return await self._arun(config, (), kwargs)

    def _forward_preprocess(self, **kwargs: Any) -> tuple[Any, dict[str, Any], Any, list[Any], dict[str, Any]]:
        plan = self._plan
        settings = current_overrides() or global_config
        if plan is not None and plan.plain and plan.signature is self.signature and plan.names.issuperset(kwargs):
            # The common call: only input fields, so no keyword below is present.
            signature = plan.signature
            demos = self.demos
            config = {**self.config}
            lm = self.lm or settings["lm"]
            extra = False
        else:
            if "new_signature" in kwargs:
                raise ValueError("new_signature is no longer a valid keyword argument; pass `signature=` instead.")
            signature = kwargs.pop("signature", None)
            if signature is None:
                signature = self.signature
            elif not isinstance(signature, type):
                from turbodspy.signatures import ensure_signature

                signature = ensure_signature(signature)
            demos = kwargs.pop("demos", self.demos)
            config = {**self.config, **kwargs.pop("config", {})}
            lm = kwargs.pop("lm", self.lm) or settings["lm"]
            extra = True
        if not isinstance(lm, BaseLM):  # the checks below, in DSPy's order, for anything but an LM
            if lm is None:
                raise ValueError(
                    "No LM is loaded. Please configure the LM using `dspy.configure(lm=dspy.LM(...))`. e.g, "
                    "`dspy.configure(lm=dspy.LM('openai/gpt-4o-mini'))`"
                )
            if isinstance(lm, str):
                raise ValueError(
                    f"LM must be an instance of `dspy.BaseLM`, not a string. Instead of using a string like "
                    f"'dspy.configure(lm=\"{lm}\")', please configure the LM like "
                    f"'dspy.configure(lm=dspy.LM(\"{lm}\"))'"
                )
            if getattr(lm, "supports_decision_requests", False) is not True:
                raise ValueError(f"LM must be a dspy.BaseLM or a decision-request client, not {type(lm)}.")

        # n > 1 at (near) zero temperature would give n copies of one answer: raise the temperature, as DSPy does.
        defaults = getattr(lm, "kwargs", {})
        temperature = config.get("temperature") or defaults.get("temperature")
        num_generations = config.get("n") or defaults.get("n") or defaults.get("num_generations") or 1
        if (temperature is None or temperature <= 0.15) and num_generations > 1:
            config["temperature"] = 0.7

        if extra:
            if "prediction" in kwargs:
                predicted = kwargs["prediction"]
                if isinstance(predicted, dict) and predicted.get("type") == "content" and "content" in predicted:
                    config["prediction"] = kwargs.pop("prediction")
            if plan is None or plan.signature is not signature:
                plan = _InputPlan(signature)
                if signature is self.signature:
                    self._plan = plan
        if plan.defaults:
            for k, v in plan.defaults.items():
                if k not in kwargs:
                    kwargs[k] = v
        if extra and not plan.names.issuperset(kwargs):
            ignored = [k for k in kwargs if k not in plan.names]
            logger.warning(
                "Input contains fields not in signature. These fields will be ignored: %s. Expected fields: %s.",
                ignored,
                list(signature.input_fields),
            )
        if settings["warn_on_type_mismatch"]:
            for name, annotation in plan.checked:
                value = kwargs.get(name)
                if value is None or (annotation is str and type(value) is str):
                    continue
                if not _is_value_compatible_with_type(value, annotation):
                    logger.warning(
                        "Type mismatch for field '%s': expected %s based on given Signature, "
                        "but the provided value is incompatible: %s.",
                        name,
                        _type_name(annotation),
                        value,
                    )
        # On the common path kwargs hold only input fields, so all are present when the counts agree.
        if not (plan.names.issubset(kwargs) if extra else len(kwargs) == len(plan.names)):
            missing = [k for k in signature.input_fields if k not in kwargs and k not in plan.allows_none]
            if missing:
                present = [k for k in signature.input_fields if k in kwargs]
                logger.warning(
                    "Not all input fields were provided to module. Present: %s. Missing: %s.", present, missing
                )
        return lm, config, signature, demos, kwargs

    def _forward_postprocess(self, completions: list[dict[str, Any]], signature: Any, **kwargs: Any) -> Prediction:
        pred = Prediction.from_completions(completions, signature)
        settings = current_overrides() or global_config
        trace = settings["trace"]
        max_size = settings["max_trace_size"]
        if kwargs.pop("_trace", True) and trace is not None and max_size > 0:
            if len(trace) >= max_size:
                # Drop the oldest tenth at once: popping one entry per call would cost O(max_size) every call.
                del trace[: len(trace) - max_size + 1 + max_size // 10]
            trace.append((self, kwargs, pred))
        return pred

    def forward(self, **kwargs: Any) -> Prediction:
        lm, config, signature, demos, kwargs = self._forward_preprocess(**kwargs)
        adapter = (current_overrides() or global_config).get("adapter")
        if adapter is None:
            adapter = _default_adapter or _default_chat_adapter()
        if type(adapter).__call__ is _ADAPTER_CALL:
            # turbodspy's own adapters take these positionally (one keyword-argument dict less per call).
            completions = _ADAPTER_CALL(adapter, lm, config, signature, demos, kwargs)
        else:
            completions = adapter(lm, lm_kwargs=config, signature=signature, demos=demos, inputs=kwargs)
        return self._forward_postprocess(completions, signature, **kwargs)

    async def aforward(self, **kwargs: Any) -> Prediction:
        lm, config, signature, demos, kwargs = self._forward_preprocess(**kwargs)
        completions = await _adapter().acall(lm, lm_kwargs=config, signature=signature, demos=demos, inputs=kwargs)
        return self._forward_postprocess(completions, signature, **kwargs)

    def update_config(self, **kwargs: Any) -> None:
        self.config = {**self.config, **kwargs}

    def get_config(self) -> dict[str, Any]:
        return self.config

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.signature})"


def _sanitize_lm_state(lm_state: dict[str, Any], allow_unsafe_lm_state: bool) -> dict[str, Any]:
    if allow_unsafe_lm_state:
        return lm_state
    unsafe = sorted(UNSAFE_LM_STATE_KEYS.intersection(lm_state))
    if not unsafe:
        return lm_state
    logger.warning(
        "Ignoring unsafe LM config key(s) during state load: %s. "
        "Pass allow_unsafe_lm_state=True to preserve these keys for trusted files.",
        unsafe,
    )
    return {k: v for k, v in lm_state.items() if k not in UNSAFE_LM_STATE_KEYS}


def serialize_object(obj: Any) -> Any:
    """A value as JSON-friendly data: pydantic models dumped in JSON mode, containers converted recursively."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and not isinstance(obj, type):
        return dump(mode="json")
    if isinstance(obj, list):
        return [serialize_object(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(serialize_object(v) for v in obj)
    if isinstance(obj, dict):
        return {k: serialize_object(v) for k, v in obj.items()}
    return obj


def _allows_none(annotation: Any) -> bool:
    if annotation is None or annotation is type(None):
        return True
    origin, args = get_origin(annotation), get_args(annotation)
    if getattr(origin, "__name__", "") == "Annotated" or str(origin) == "typing.Annotated":
        return bool(args) and _allows_none(args[0])
    if origin is Union or origin is types.UnionType:
        return any(_allows_none(a) for a in args)
    return False


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is None:
        return getattr(annotation, "__name__", str(annotation))
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if args:
        inner = ", ".join("..." if a is ... else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(origin, "__name__", str(origin))


def _is_value_compatible_with_type(value: Any, expected: Any) -> bool:
    # A list of strings is accepted for a `str` field.
    if expected is str and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return True
    return _check_type(value, expected)


def _check_type(value: Any, expected: Any) -> bool:
    if expected is Any:
        return True
    if expected is str:  # by far the most common field type
        return isinstance(value, str)
    origin, args = get_origin(expected), get_args(expected)
    if origin is Union or origin is types.UnionType:
        return any(_check_type(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and (not args or all(_check_type(v, args[0]) for v in value))
    if origin is dict:
        if not isinstance(value, dict):
            return False
        if not args:
            return True
        key_type, value_type = args
        return all(_check_type(k, key_type) and _check_type(v, value_type) for k, v in value.items())
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_check_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(_check_type(v, a) for v, a in zip(value, args, strict=True))
    if origin is set or origin is frozenset:
        return isinstance(value, origin) and (not args or all(_check_type(v, args[0]) for v in value))
    if isinstance(expected, type):
        return isinstance(value, expected)
    return False
