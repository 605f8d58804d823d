"""`JSONAdapter`: inputs in `[[ ## name ## ]]` sections, outputs as one JSON object.

Requests structured outputs (`response_format` with the outputs' JSON schema) where the model supports them and
a JSON object otherwise; reads the completion leniently (code fences, surrounding prose, small repairs) and
validates each field's type.
"""

from __future__ import annotations

import json
import logging
from typing import Any, get_origin

import pydantic

from turbodspy._core import parse_json_object
from turbodspy.adapters import _template
from turbodspy.adapters.chat_adapter import STRUCTURE_INTRO, ChatAdapter, FieldInfoWithName, _type_notes
from turbodspy.adapters.utils import format_field_value, serialize_for_json
from turbodspy.errors import AdapterParseError

logger = logging.getLogger(__name__)


class JSONAdapter(ChatAdapter):
    """Asks the LM for a JSON object holding the output fields and parses it back with type validation."""

    _template_style = "json"

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = True,
        parallel_tool_calls: bool | None = None,
    ):
        super().__init__(
            callbacks=callbacks,
            use_native_function_calling=use_native_function_calling,
            parallel_tool_calls=parallel_tool_calls,
        )

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: type) -> None:
        """Set `response_format`: the outputs' schema where the model takes one, else a plain JSON object."""
        if "response_format" not in _lm_capability(lm, "supported_params", set()):
            return
        if _has_open_ended_mapping(signature) or not _lm_capability(lm, "supports_response_schema", False):
            lm_kwargs["response_format"] = {"type": "json_object"}
            return
        try:
            lm_kwargs["response_format"] = structured_outputs_model(signature)
        except (ValueError, pydantic.PydanticInvalidForJsonSchema, pydantic.PydanticSchemaGenerationError):
            logger.warning("Failed to build structured output schema; using JSON mode before execution.")
            lm_kwargs["response_format"] = {"type": "json_object"}

    def __call__(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type,
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        self._prepare_response_format(lm, lm_kwargs, signature)
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    async def acall(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type,
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        self._prepare_response_format(lm, lm_kwargs, signature)
        return await super().acall(lm, lm_kwargs, signature, demos, inputs)

    def format_field_structure(self, signature: type) -> str:
        """Inputs in `[[ ## name ## ]]` sections; outputs as a JSON object of type notes."""
        if self._custom_field_layout:
            parts = [
                STRUCTURE_INTRO,
                "Inputs will have the following structure:",
                self.format_field_with_value(_type_notes(signature.input_fields), role="user"),
                "Outputs will be a JSON object with the following fields.",
                self.format_field_with_value(_type_notes(signature.output_fields), role="assistant"),
            ]
            return "\n\n".join(parts).strip()
        return self._template(signature).field_structure()

    def format_assistant_message_content(
        self,
        signature: type,
        outputs: dict[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        """The output fields as an indented JSON object; absent ones hold `missing_field_message`."""
        if self._custom_field_layout:
            return self.format_field_with_value(
                {
                    FieldInfoWithName(name=k, info=v): outputs.get(k, missing_field_message)
                    for k, v in signature.output_fields.items()
                },
                role="assistant",
            )
        return self._template(signature).assistant_content(
            outputs, None if missing_field_message is None else str(missing_field_message)
        )

    def format_field_with_value(self, fields_with_values: dict[FieldInfoWithName, Any], role: str = "user") -> str:
        """User role: `[[ ## name ## ]]` sections; assistant role: one indented JSON object."""
        if role == "user":
            output = []
            for field, value in fields_with_values.items():
                output.append(f"[[ ## {field.name} ## ]]\n{format_field_value(field_info=field.info, value=value)}")
            return "\n\n".join(output).strip()
        d = {k.name: v for k, v in fields_with_values.items()}
        return json.dumps(serialize_for_json(d), indent=2, ensure_ascii=False)

    def parse(self, signature: type, completion: str) -> dict[str, Any]:
        """The JSON object in `completion` (repaired if needed), restricted to output fields and type-checked."""
        fields = parse_json_object(completion)
        if fields is None:
            raise AdapterParseError(
                adapter_name="JSONAdapter",
                signature=signature,
                lm_response=completion,
                message="LM response cannot be serialized to a JSON object.",
            )
        plan = _template.parse_plan_for(signature)
        coercers = plan.coercers
        fields = {k: v for k, v in fields.items() if k in coercers}
        for name, value in fields.items():
            try:
                fields[name] = coercers[name](value)
            except ValueError as exc:
                raise AdapterParseError(
                    adapter_name=type(self).__name__,
                    signature=signature,
                    lm_response=completion,
                    message=f"Failed to parse field {name}: {exc}",
                    parsed_result=fields,
                ) from exc
        fields = plan.complete(fields)
        if len(fields) != len(plan.names):
            raise AdapterParseError(
                adapter_name="JSONAdapter", signature=signature, lm_response=completion, parsed_result=fields
            )
        return fields

    def format_finetune_data(
        self, signature: type, demos: list[dict[str, Any]], inputs: dict[str, Any], outputs: dict[str, Any]
    ) -> dict[str, list[Any]]:
        raise NotImplementedError("JSONAdapter does not format fine-tuning data (DSPy 3.4.1 does not either).")


def _lm_capability(lm: Any, name: str, default: Any) -> Any:
    """A capability the LM declares (`supports_response_schema`, `supported_params`); `default` if it can't say.

    turbodspy's LM answers through LiteLLM's model tables, loaded on first use, never at import.
    """
    try:
        return getattr(lm, name)
    except Exception:
        return default


def _has_open_ended_mapping(signature: type) -> bool:
    """Whether an output is a `dict[...]`: structured outputs need every property declared."""
    return any(get_origin(field.annotation) is dict for field in signature.output_fields.values())


def structured_outputs_model(signature: type) -> type[pydantic.BaseModel]:
    """A pydantic model of the outputs whose JSON schema suits OpenAI structured outputs.

    Every object lists all its properties as required and forbids additional ones. Raises ValueError for an
    open-ended mapping output, which structured outputs cannot express.
    """
    fields = {}
    for name, field in signature.output_fields.items():
        if get_origin(field.annotation) is dict:
            raise ValueError(
                f"Field '{name}' has an open-ended mapping type which is not supported by Structured Outputs."
            )
        fields[name] = (field.annotation, field.default if hasattr(field, "default") else ...)
    model = pydantic.create_model("DSPyProgramOutputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    for prop in schema.get("properties", {}).values():
        prop.pop("json_schema_extra", None)
    _require_all_properties(schema)
    model.model_json_schema = lambda *args, **kwargs: schema
    return model


def _require_all_properties(schema: dict[str, Any]) -> None:
    if schema.get("type") == "object":
        props = schema.get("properties")
        if props is not None:
            schema["required"] = list(props.keys())
            schema["additionalProperties"] = False
            for sub in props.values():
                if isinstance(sub, dict):
                    _require_all_properties(sub)
        else:
            schema["properties"] = {}
            schema["required"] = []
            schema["additionalProperties"] = False
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _require_all_properties(schema["items"])
    for key in ("$defs", "definitions"):
        for sub in schema.get(key, {}).values():
            _require_all_properties(sub)
