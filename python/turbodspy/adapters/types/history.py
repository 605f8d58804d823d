"""`History`: past turns of a conversation, given to a signature as an input field."""

from __future__ import annotations

from typing import Any

import pydantic


class History(pydantic.BaseModel):
    """The conversation so far: a list of turns, each a dict keyed by the signature's field names.

    Declare an input field `history: dspy.History` and pass `History(messages=[{"question": ..., "answer": ...}])`;
    adapters then send each turn as a user message (its input fields) and an assistant message (its outputs)
    before the current request.
    """

    messages: list[dict[str, Any]]

    model_config = pydantic.ConfigDict(
        frozen=True,
        str_strip_whitespace=True,
        validate_assignment=True,
        extra="forbid",
    )
