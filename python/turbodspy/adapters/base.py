"""`Adapter`: the base of ChatAdapter and JSONAdapter, turning signature + demos + inputs into messages and the
LM's outputs back into field dicts, with DSPy 3.4.1's public methods and behaviour.

`format` and `parse` are wrapped with `with_callbacks` (so `on_adapter_format_*`/`on_adapter_parse_*` fire) in
`__init_subclass__`, which is the single hook point for adapter callbacks.
"""

from __future__ import annotations

from typing import Any

from turbodspy.adapters import _template
from turbodspy.adapters.utils import apply_output_field_defaults, expand_custom_type_markers
from turbodspy.errors import AdapterParseError
from turbodspy.settings import current_overrides, global_config
from turbodspy.utils.callback import with_callbacks

# The steps of a call, besides the `format` hooks: a subclass replacing any of them gets the step-by-step call.
_CALL_STEPS = ("format", "parse", "_call_preprocess", "_call_postprocess")

# The methods `format` composes. A subclass that overrides any of them gets the composed (Python) path, so its
# override is honoured; otherwise the whole prompt is one call into the compiled Rust template.
_FORMAT_HOOKS = (
    "format_system_message",
    "format_field_description",
    "format_field_structure",
    "format_task_description",
    "format_user_message_content",
    "format_assistant_message_content",
    "format_demos",
    "format_conversation_history",
    "user_message_output_requirements",
    "format_field_with_value",
    "_get_history_field_name",
)


class Adapter:
    """Base adapter: `format` builds the messages, `parse` reads a completion, `__call__` does both around an LM call.

    Subclasses implement the `format_*` methods and `parse`. Outputs of `__call__` are one dict per completion,
    keyed by the signature's output fields.
    """

    # The template style of turbodspy's own adapters ('chat' or 'json'); None for adapters built elsewhere.
    _template_style: str | None = None
    # The style `format` may render in one Rust call: set per class by `__init_subclass__`.
    _fast_style: str | None = None
    # Whether the class replaced `format_field_with_value` (structure and assistant text then go through it).
    _custom_field_layout: bool = False

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = False,
        native_response_types: list[type] | None = None,
        parallel_tool_calls: bool | None = None,
    ):
        self.callbacks = callbacks or []
        self.use_native_function_calling = use_native_function_calling
        self.parallel_tool_calls = parallel_tool_calls
        self.native_response_types = native_response_types or []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Callback hook point: every adapter's format() and parse() report to the active callbacks.
        for name in ("format", "parse"):
            method = getattr(cls, name)
            if not getattr(method, "_reports_to_callbacks", False):
                wrapped = with_callbacks(method)
                wrapped._reports_to_callbacks = True
                setattr(cls, name, wrapped)
        # The undecorated methods: with no callbacks in force the wrapper would only look them up and call these.
        cls._plain_format = cls.format.__wrapped__
        cls._plain_parse = cls.parse.__wrapped__
        cls._fast_style = _fast_style_of(cls)
        cls._custom_field_layout = _overrides(cls, "format_field_with_value")
        # A chat adapter that changes none of the steps of a call: `__call__` does them all in one go.
        cls._stock_chat = cls._fast_style == "chat" and not any(_overrides(cls, name) for name in _CALL_STEPS)

    def _observed(self) -> bool:
        """Whether callbacks are in force for this adapter (or `format`/`parse` were replaced on the instance)."""
        return bool(
            self.callbacks
            or (current_overrides() or global_config)["callbacks"]
            or "format" in self.__dict__
            or "parse" in self.__dict__
        )

    def _call_preprocess(self, lm: Any, lm_kwargs: dict[str, Any], signature: type, inputs: dict[str, Any]) -> type:
        # Tool options are dropped when native function calling is off, as in DSPy. (Signatures with dspy.Tool /
        # ToolCalls fields are not supported: turbodspy has no tool types.)
        if lm_kwargs and not self.use_native_function_calling:
            for key in ("tools", "tool_choice", "parallel_tool_calls"):
                lm_kwargs.pop(key, None)
        return signature

    def _call_postprocess(
        self,
        processed_signature: type,
        original_signature: type,
        outputs: list[Any],
        lm: Any,
        lm_kwargs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        values = []
        output_names = _template.output_names(original_signature)
        parse = self.parse if self._observed() else self._plain_parse
        for output in outputs:
            text, logprobs = _template.completion_text(output, type(self).__name__, original_signature)
            value = parse(processed_signature, text)
            # A parse that already gave exactly the output fields, in order, has nothing left to fill or reorder.
            if tuple(value) != output_names:
                value = apply_output_field_defaults(original_signature, value)
                if len(value) != len(output_names):
                    for name in output_names:
                        value.setdefault(name, None)
            if logprobs:
                value["logprobs"] = logprobs
            values.append(value)
        return values

    def _messages(
        self, lm: Any, lm_kwargs: dict[str, Any], signature: type, demos: list[dict[str, Any]], inputs: dict[str, Any]
    ) -> tuple[Any, type, list[dict[str, Any]]]:
        """`(ChatCall or None, processed signature, messages)` for a call: a stock ChatAdapter without callbacks
        runs `_call_preprocess` and `format` in one go, and its `ChatCall` then parses the outputs too."""
        observed = self._observed()
        if self._stock_chat and not observed:
            if lm_kwargs and not self.use_native_function_calling:
                for key in ("tools", "tool_choice", "parallel_tool_calls"):
                    lm_kwargs.pop(key, None)
            chat = _template.chat_call(signature)
            return chat, signature, chat.template.format(demos, inputs)
        processed = self._call_preprocess(lm, lm_kwargs, signature, inputs)
        if observed:
            return None, processed, self.format(processed, demos, inputs)
        return None, processed, self._plain_format(processed, demos, inputs)

    def __call__(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type,
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Format, call `lm(messages=..., **lm_kwargs)`, and parse each output (one dict per completion).

        A completion that cannot be parsed is retried with `_json_fallback()` (ChatAdapter's JSONAdapter) if the
        adapter has one; LM errors (context window, provider) propagate as they are.
        """
        try:
            chat, processed, messages = self._messages(lm, lm_kwargs, signature, demos, inputs)
            outputs = lm(messages=messages, **lm_kwargs)
            if chat is not None:
                return chat.values(type(self).__name__, signature, outputs)
            return self._call_postprocess(processed, signature, outputs, lm, lm_kwargs)
        except AdapterParseError:
            fallback = self._json_fallback()
            if fallback is None:
                raise
            return fallback(lm, lm_kwargs, signature, demos, inputs)

    async def acall(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type,
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """`__call__` with `await lm.acall(...)`."""
        try:
            chat, processed, messages = self._messages(lm, lm_kwargs, signature, demos, inputs)
            outputs = await lm.acall(messages=messages, **lm_kwargs)
            if chat is not None:
                return chat.values(type(self).__name__, signature, outputs)
            return self._call_postprocess(processed, signature, outputs, lm, lm_kwargs)
        except AdapterParseError:
            fallback = self._json_fallback()
            if fallback is None:
                raise
            return await fallback.acall(lm, lm_kwargs, signature, demos, inputs)

    def _json_fallback(self) -> Adapter | None:
        """The adapter that retries a call whose completion could not be parsed (None: no retry)."""
        return None

    def format(self, signature: type, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages for one call: system message, demos as user/assistant turns, history turns, the request."""
        style = type(self)._fast_style
        if style is not None:
            return _template.template_for(signature, style).format(demos, inputs)
        inputs_copy = dict(inputs)
        history_field_name = self._get_history_field_name(signature)
        if history_field_name:
            signature_without_history = signature.delete(history_field_name)
            conversation_history = self.format_conversation_history(
                signature_without_history, history_field_name, inputs_copy
            )
        messages = [{"role": "system", "content": self.format_system_message(signature)}]
        messages.extend(self.format_demos(signature, demos))
        if history_field_name:
            content = self.format_user_message_content(signature_without_history, inputs_copy, main_request=True)
            messages.extend(conversation_history)
        else:
            content = self.format_user_message_content(signature, inputs_copy, main_request=True)
        if content:
            messages.append({"role": "user", "content": content})
        return [expand_custom_type_markers(message) for message in messages]

    def format_system_message(self, signature: type) -> str:
        """Field descriptions, field structure and task description, one per line."""
        return (
            f"{self.format_field_description(signature)}\n"
            f"{self.format_field_structure(signature)}\n"
            f"{self.format_task_description(signature)}"
        )

    def format_field_description(self, signature: type) -> str:
        """The input and output fields with their types and descriptions."""
        raise NotImplementedError

    def format_field_structure(self, signature: type) -> str:
        """How inputs are laid out and how the LM must lay out its outputs."""
        raise NotImplementedError

    def format_task_description(self, signature: type) -> str:
        """The task, from the signature's instructions."""
        raise NotImplementedError

    def format_user_message_content(
        self,
        signature: type,
        inputs: dict[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        """A user message with the input fields present in `inputs` (and the output reminder if `main_request`)."""
        raise NotImplementedError

    def format_assistant_message_content(
        self,
        signature: type,
        outputs: dict[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        """An assistant message with the output fields; absent ones read `missing_field_message`."""
        raise NotImplementedError

    def format_demos(self, signature: type, demos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Demos as user/assistant pairs: incomplete ones (some fields missing) first, then complete ones.

        A demo missing every input or every output field is dropped.
        """
        complete_demos = []
        incomplete_demos = []
        for demo in demos:
            is_complete = all(k in demo and demo[k] is not None for k in signature.fields)
            has_input = any(k in demo for k in signature.input_fields)
            has_output = any(k in demo for k in signature.output_fields)
            if is_complete:
                complete_demos.append(demo)
            elif has_input and has_output:
                incomplete_demos.append(demo)
        messages = []
        prefix = "This is an example of the task, though some input or output fields are not supplied."
        for demo in incomplete_demos:
            messages.append(
                {"role": "user", "content": self.format_user_message_content(signature, demo, prefix=prefix)}
            )
            messages.append(
                {
                    "role": "assistant",
                    "content": self.format_assistant_message_content(
                        signature, demo, missing_field_message="Not supplied for this particular example. "
                    ),
                }
            )
        for demo in complete_demos:
            messages.append({"role": "user", "content": self.format_user_message_content(signature, demo)})
            messages.append(
                {
                    "role": "assistant",
                    "content": self.format_assistant_message_content(
                        signature, demo, missing_field_message="Not supplied for this conversation history message. "
                    ),
                }
            )
        return messages

    def _get_history_field_name(self, signature: type) -> str | None:
        return _template.history_field_name(signature)

    def format_conversation_history(
        self, signature: type, history_field_name: str, inputs: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The turns of `inputs[history_field_name]` as messages; removes that key from `inputs`.

        `signature` is the signature without the history field.
        """
        history = inputs[history_field_name].messages if history_field_name in inputs else None
        if history is None:
            return []
        messages = []
        for message in history:
            user_content = self.format_user_message_content(
                signature, message, main_request=any(name in message for name in signature.input_fields)
            )
            if user_content:
                messages.append({"role": "user", "content": user_content})
            assistant_content = self.format_assistant_message_content(signature, message)
            if assistant_content:
                messages.append({"role": "assistant", "content": assistant_content})
        del inputs[history_field_name]
        return messages

    def parse(self, signature: type, completion: str) -> dict[str, Any]:
        """The output fields in `completion`, coerced to their types; raises AdapterParseError when they are not."""
        raise NotImplementedError


def _overrides(cls: type, name: str) -> bool:
    """Whether `cls` replaces method `name` of its nearest turbodspy adapter."""
    for base in cls.__mro__:
        if vars(base).get("_template_style") is not None:
            return getattr(cls, name) is not getattr(base, name)
    return False


def _fast_style_of(cls: type) -> str | None:
    """The template style `cls.format` may render in Rust: its nearest turbodspy adapter's, if `cls` overrides
    none of the methods that `format` composes."""
    for base in cls.__mro__:
        style = vars(base).get("_template_style")
        if style is not None:
            if all(getattr(cls, name) is getattr(base, name) for name in _FORMAT_HOOKS):
                return style
            return None
    return None


# The base class is not decorated (only its subclasses are), so its plain methods are its own.
Adapter._plain_format = Adapter.format  # type: ignore[attr-defined]
Adapter._plain_parse = Adapter.parse  # type: ignore[attr-defined]
Adapter._stock_chat = False  # type: ignore[attr-defined]
