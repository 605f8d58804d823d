"""`LM`: a language model reached through LiteLLM, with DSPy 3.4.1's constructor, requests and cache keys."""

from __future__ import annotations

import re
from typing import Any, Literal

from turbodspy.clients import provider
from turbodspy.clients.base_lm import BUILTIN_CACHE_IDENTIFIERS, BaseLM, PreparedCall
from turbodspy.errors import LMConfigurationError

MODEL_TYPES = ("chat", "text", "responses")

# The cache identifiers DSPy 3.4.1 hashes with each request, per model type; equal keys let caches be shared.
_DSPY_FN_IDENTIFIERS = {
    ("chat", False): "dspy.clients.lm.litellm_completion",
    ("chat", True): "dspy.clients.lm.alitellm_completion",
    ("text", False): "dspy.clients.lm.litellm_text_completion",
    ("text", True): "dspy.clients.lm.alitellm_text_completion",
    ("responses", False): "dspy.clients.lm.litellm_responses_completion",
    ("responses", True): "dspy.clients.lm.alitellm_responses_completion",
}

_REASONING_MODEL = re.compile(
    r"^(?:o[1345](?:-(?:mini|nano|pro))?(?:-\d{4}-\d{2}-\d{2})?|gpt-5(?:\.\d+)*(?!-chat)(?:-.*)?)$"
)


def is_openai_reasoning_model(model: str) -> bool:
    """o1/o3/o4/o5 and gpt-5 families (not the -chat variants): they take max_completion_tokens, temperature 1."""
    return _REASONING_MODEL.match(model.rsplit("/", 1)[-1].lower()) is not None


class LM(BaseLM):
    """A language model from any provider LiteLLM reaches: `LM("openai/gpt-4o-mini")`, `LM("anthropic/...")`."""

    def __init__(
        self,
        model: str,
        model_type: Literal["chat", "text", "responses"] = "chat",
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: bool = True,
        callbacks: list[Any] | None = None,
        num_retries: int = 3,
        provider: Any = None,
        finetuning_model: str | None = None,
        launch_kwargs: dict[str, Any] | None = None,
        train_kwargs: dict[str, Any] | None = None,
        use_developer_role: bool = False,
        **kwargs: Any,
    ):
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string, e.g. LM('openai/gpt-4o-mini')")
        _, slash, name = model.partition("/")
        if slash and not name:
            raise ValueError(f"model {model!r} has a provider prefix but no model name after it")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
        if isinstance(num_retries, bool) or not isinstance(num_retries, int) or num_retries < 0:
            raise ValueError("num_retries must be a non-negative integer")
        self.model = model  # read by _get_initial_kwargs
        # A subclass that brings its own forward is called through it, and keyed as its own.
        self._own_forward = type(self).forward is not LM.forward or type(self).aforward is not LM.aforward
        super().__init__(
            model=model,
            model_type=model_type,
            temperature=temperature,
            max_tokens=max_tokens,
            cache=cache,
            callbacks=callbacks,
            num_retries=num_retries,
            **kwargs,
        )
        self.provider = provider
        self.finetuning_model = finetuning_model
        self.launch_kwargs = launch_kwargs or {}
        self.train_kwargs = train_kwargs or {}
        self.use_developer_role = use_developer_role
        self._warn_zero_temp_rollout(self.kwargs.get("temperature"), self.kwargs.get("rollout_id"))

    def _get_initial_kwargs(self, *, temperature: Any, max_tokens: Any, **kwargs: Any) -> dict[str, Any]:
        if is_openai_reasoning_model(self.model):
            if (temperature and temperature != 1.0) or (max_tokens and max_tokens < 16000):
                raise LMConfigurationError(
                    "OpenAI's reasoning models require passing temperature=1.0 or None and max_tokens >= 16000 or "
                    f"None to `LM(...)`, e.g. LM('{self.model}', temperature=1.0, max_tokens=16000)",
                    model=self.model,
                    provider=provider.provider_of(self.model),
                )
            initial = dict(temperature=temperature, max_completion_tokens=max_tokens, **kwargs)
        else:
            initial = dict(temperature=temperature, max_tokens=max_tokens, **kwargs)
        if initial.get("rollout_id") is None:
            initial.pop("rollout_id", None)
        return initial

    @property
    def supports_function_calling(self) -> bool:
        return bool(_capability("supports_function_calling", self.model))

    @property
    def supports_reasoning(self) -> bool:
        return bool(_capability("supports_reasoning", self.model))

    @property
    def supports_response_schema(self) -> bool:
        return bool(_capability("supports_response_schema", self.model))

    @property
    def supported_params(self) -> set[str]:
        return set(_capability("get_supported_openai_params", self.model) or ())

    def _cache_identifier(self, asynchronous: bool) -> str:
        if self._own_forward:
            return super()._cache_identifier(asynchronous)
        return _DSPY_FN_IDENTIFIERS[(self.model_type, asynchronous)]

    def _fetch(self, call: PreparedCall) -> Any:
        if self._own_forward:
            return super()._fetch(call)
        return provider.complete(call.request, self.model_type, self.num_retries, _agent())

    async def _afetch(self, call: PreparedCall) -> Any:
        if self._own_forward:
            return await super()._afetch(call)
        return await provider.acomplete(call.request, self.model_type, self.num_retries, _agent())

    def _rendered_messages(self, messages: list) -> list:
        if self.model_type != "responses":
            return messages
        # Before the key is computed, as DSPy does, so both libraries key the same request alike.
        return [{**m, "role": "developer"} if m.get("role") == "system" else m for m in messages]

    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        """One provider call, uncached and unrecorded: LiteLLM's response object."""
        _, request, _, _ = self._prepare(prompt, messages, {**kwargs, "cache": False}, asynchronous=False)
        return provider.complete(request, self.model_type, self.num_retries, _agent())

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        _, request, _, _ = self._prepare(prompt, messages, {**kwargs, "cache": False}, asynchronous=True)
        return await provider.acomplete(request, self.model_type, self.num_retries, _agent())

    def dump_state(self) -> dict[str, Any]:
        state = super().dump_state()
        state.update(
            finetuning_model=self.finetuning_model, launch_kwargs=self.launch_kwargs, train_kwargs=self.train_kwargs
        )
        if self.use_developer_role:
            state["use_developer_role"] = True
        if is_openai_reasoning_model(self.model) and "max_completion_tokens" in state:
            state["max_tokens"] = state.pop("max_completion_tokens")
        return state

    @classmethod
    def load_state(cls, state: dict[str, Any], *, allow_custom_lm_class: bool = False) -> BaseLM:
        state = dict(state)
        model = state.get("model")
        if isinstance(model, str) and is_openai_reasoning_model(model) and "max_completion_tokens" in state:
            state.setdefault("max_tokens", state["max_completion_tokens"])
            state.pop("max_completion_tokens")
        return super().load_state(state, allow_custom_lm_class=allow_custom_lm_class)

    def __repr__(self) -> str:
        return f"LM(model={self.model!r}, model_type={self.model_type!r})"


BUILTIN_CACHE_IDENTIFIERS.add(LM._cache_identifier)


def _agent() -> str:
    from turbodspy import __version__

    return f"turbodspy/{__version__}"


# What LiteLLM's model map says about a model, looked up once per (question, model): adapters ask on every call.
_capabilities: dict[tuple[str, str], Any] = {}


def _capability(name: str, model: str) -> Any:
    key = (name, model)
    if key not in _capabilities:
        litellm = provider.load_litellm()
        try:
            _capabilities[key] = getattr(litellm, name)(model=model)
        except Exception:  # LiteLLM raises for models it does not know: they support nothing special
            _capabilities[key] = None
    return _capabilities[key]
