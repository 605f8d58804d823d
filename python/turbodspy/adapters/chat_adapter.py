"""`ChatAdapter`, the default adapter: fields in `[[ ## name ## ]]` sections, in the prompt and in the answer.

Messages match DSPy 3.4.1's byte for byte. When a completion cannot be parsed, the call is retried once with
`JSONAdapter` (DSPy's fallback); provider and context-window errors are raised as they are.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic.fields import FieldInfo

from turbodspy.adapters import _template
from turbodspy.adapters.base import Adapter
from turbodspy.adapters.utils import format_field_value, translate_field_type


class FieldInfoWithName(NamedTuple):
    name: str
    info: FieldInfo


STRUCTURE_INTRO = "All interactions will be structured in the following way, with the appropriate values filled in."


def _type_notes(fields: dict[str, FieldInfo]) -> dict[FieldInfoWithName, str]:
    return {FieldInfoWithName(name=k, info=v): translate_field_type(k, v) for k, v in fields.items()}


class ChatAdapter(Adapter):
    """Formats fields as `[[ ## name ## ]]` sections and parses completions at those markers.

    Args:
        callbacks: callbacks for `format` and `parse`, in addition to `settings.callbacks`.
        use_native_function_calling: accepted for DSPy compatibility (turbodspy has no native tool types).
        native_response_types: accepted for DSPy compatibility.
        use_json_adapter_fallback: retry with JSONAdapter when a completion cannot be parsed (default True).
        parallel_tool_calls: accepted for DSPy compatibility.
    """

    _template_style = "chat"

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = False,
        native_response_types: list[type] | None = None,
        use_json_adapter_fallback: bool = True,
        parallel_tool_calls: bool | None = None,
    ):
        super().__init__(
            callbacks=callbacks,
            use_native_function_calling=use_native_function_calling,
            native_response_types=native_response_types,
            parallel_tool_calls=parallel_tool_calls,
        )
        self.use_json_adapter_fallback = use_json_adapter_fallback

    def _json_fallback(self) -> Adapter | None:
        """JSONAdapter with this adapter's options: ChatAdapter retries an unparseable completion with it."""
        from turbodspy.adapters.json_adapter import JSONAdapter

        if isinstance(self, JSONAdapter) or not self.use_json_adapter_fallback:
            return None
        return JSONAdapter(
            use_native_function_calling=self.use_native_function_calling,
            parallel_tool_calls=self.parallel_tool_calls,
        )

    def _template(self, signature: type) -> Any:
        # Public pieces render through the template of this class's style (chat here, json in JSONAdapter).
        return _template.template_for(signature, self._template_style)

    def format_field_description(self, signature: type) -> str:
        return self._template(signature).field_description()

    def format_field_structure(self, signature: type) -> str:
        """Each input and output field in its `[[ ## name ## ]]` section, then `[[ ## completed ## ]]`."""
        if self._custom_field_layout:
            parts = [
                STRUCTURE_INTRO,
                self.format_field_with_value(_type_notes(signature.input_fields)),
                self.format_field_with_value(_type_notes(signature.output_fields)),
                "[[ ## completed ## ]]\n",
            ]
            return "\n\n".join(parts).strip()
        return self._template(signature).field_structure()

    def format_task_description(self, signature: type) -> str:
        return self._template(signature).task_description()

    def format_user_message_content(
        self,
        signature: type,
        inputs: dict[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        requirements = None
        if main_request and type(self)._fast_style is None:
            # A subclass may have rewritten the reminder: use its text.
            requirements = self.user_message_output_requirements(signature)
        return self._template(signature).user_content(inputs, prefix, suffix, main_request, requirements)

    def user_message_output_requirements(self, signature: type) -> str:
        """The short reminder of the output format closing the user message."""
        return self._template(signature).output_requirements()

    def format_assistant_message_content(
        self,
        signature: type,
        outputs: dict[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        if self._custom_field_layout:
            content = self.format_field_with_value(
                {
                    FieldInfoWithName(name=k, info=v): outputs.get(k, missing_field_message)
                    for k, v in signature.output_fields.items()
                }
            )
            return content + "\n\n[[ ## completed ## ]]\n"
        return self._template(signature).assistant_content(
            outputs, None if missing_field_message is None else str(missing_field_message)
        )

    def format_field_with_value(self, fields_with_values: dict[FieldInfoWithName, Any]) -> str:
        """`[[ ## name ## ]]` sections with each value formatted for its field."""
        output = []
        for field, field_value in fields_with_values.items():
            output.append(f"[[ ## {field.name} ## ]]\n{format_field_value(field_info=field.info, value=field_value)}")
        return "\n\n".join(output).strip()

    def parse(self, signature: type, completion: str) -> dict[str, Any]:
        """The output fields in `completion`'s `[[ ## name ## ]]` sections, coerced to their annotations."""
        return _template.chat_call(signature).parse(signature, completion)

    def format_finetune_data(
        self, signature: type, demos: list[dict[str, Any]], inputs: dict[str, Any], outputs: dict[str, Any]
    ) -> dict[str, list[Any]]:
        """The call as OpenAI fine-tuning data: the formatted messages plus the expected assistant message."""
        messages = self.format(signature=signature, demos=demos, inputs=inputs)
        content = self.format_assistant_message_content(signature=signature, outputs=outputs)
        return {"messages": [*messages, {"role": "assistant", "content": content}]}
