"""`ChainOfThought`: `Predict` with a `reasoning` output field before the others, so the LM reasons first."""

from __future__ import annotations

from typing import Any

from turbodspy.predict.predict import Predict
from turbodspy.primitives.module import Module


class ChainOfThought(Module):
    """`ChainOfThought("question -> answer")(question=...)` gives `.reasoning` and `.answer`."""

    def __init__(
        self, signature: Any, rationale_field: Any = None, rationale_field_type: type = str, **config: Any
    ) -> None:
        from turbodspy.signatures import OutputField, ensure_signature

        super().__init__()
        signature = ensure_signature(signature)
        field_type = rationale_field.annotation if rationale_field else rationale_field_type
        field = rationale_field if rationale_field else OutputField(desc="${reasoning}")
        self.predict = Predict(signature.prepend(name="reasoning", field=field, type_=field_type), **config)

    def forward(self, **kwargs: Any) -> Any:
        return self.predict(**kwargs)

    async def aforward(self, **kwargs: Any) -> Any:
        return await self.predict.acall(**kwargs)
