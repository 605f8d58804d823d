"""`python -m turbodspy demo`: the seed documents' calls, run for real, printing what each returned.

Offline by default: a local OpenAI-compatible server (`turbodspy.testing`) stands in for the provider.
`--model`, `--api-base` and `--api-key` (or the provider's usual environment variables) point it at a real one.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import turbodspy as dspy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m turbodspy demo", description=__doc__)
    parser.add_argument("--model", default=None, help="LiteLLM model string (default: openai/gpt-4o-mini)")
    parser.add_argument("--api-base", default=None, help="provider or gateway URL (default: a local server)")
    parser.add_argument("--api-key", default=None, help="API key (default: the provider's environment variable)")
    parser.add_argument("--cache-dir", default=None, help="disk cache directory (default: a fresh temporary one)")
    args = parser.parse_args(argv)

    model = args.model or "openai/gpt-4o-mini"
    with _provider(args) as (api_base, api_key, where):
        print(f"turbodspy {dspy.__version__} demo: {model} at {where}\n")
        with tempfile.TemporaryDirectory() as scratch:
            dspy.configure_cache(disk_cache_dir=args.cache_dir or scratch)
            failures = _run_seed(model, api_base, api_key)
    print(f"\n{'all steps ran' if not failures else f'{failures} step(s) failed'}")
    return 1 if failures else 0


@contextlib.contextmanager
def _provider(args: argparse.Namespace) -> Iterator[tuple[str | None, str | None, str]]:
    if args.model or args.api_base or args.api_key:
        # A real provider: the key comes from --api-key or the provider's usual environment variable.
        yield args.api_base, args.api_key, args.api_base or "the provider's default endpoint"
        return
    from turbodspy.testing import LocalLLMServer

    with LocalLLMServer() as server:
        yield server.openai_base, "local-demo-key", f"{server.openai_base} (local server)"


def _run_seed(model: str, api_base: str | None, api_key: str | None) -> int:
    connection = {"api_base": api_base, "api_key": api_key}
    failures = 0

    def step(title: str, fn: Callable[[], Any]) -> None:
        nonlocal failures
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # a demo reports and goes on
            failures += 1
            print(f"- {title}\n    FAILED: {type(exc).__name__}: {exc}")
            return
        print(f"- {title}  ({(time.perf_counter() - started) * 1000:.1f} ms)\n    -> {result!r}")

    lm = dspy.LM(model, **connection)
    dspy.configure(lm=lm)
    print("Calling the LM directly")
    step('lm("Say this is a test!", temperature=0.7)', lambda: lm("Say this is a test!", temperature=0.7))
    step(
        'lm(messages=[{"role": "user", "content": "Say this is a test!"}])',
        lambda: lm(messages=[{"role": "user", "content": "Say this is a test!"}]),
    )
    step("the same call again (a cache hit)", lambda: lm("Say this is a test!", temperature=0.7))

    print("\nUsing the LM with modules")
    qa = dspy.ChainOfThought("question -> answer")
    question = "How many floors are in the castle David Gregory inherited?"
    step(f"ChainOfThought('question -> answer')(question={question!r}).answer", lambda: qa(question=question).answer)
    step("... and its reasoning", lambda: qa(question=question).reasoning)

    print("\nUsing multiple LMs")
    other = dspy.LM(_sibling_model(model), **connection)

    def in_context() -> str:
        with dspy.context(lm=other):
            return qa(question=question).answer

    step(f"with dspy.context(lm=LM({other.model!r})): qa(...).answer", in_context)
    step("after the block, the configured LM again", lambda: dspy.settings.lm.model)

    print("\nConfiguring generation")
    tuned = dspy.LM(model, temperature=0.9, max_tokens=3000, stop=None, cache=False, **connection)
    step("LM(..., temperature=0.9, max_tokens=3000, stop=None, cache=False)", lambda: tuned("Say this is a test!"))
    step(
        'lm("Say this is a test!", rollout_id=1, temperature=1.0)',
        lambda: lm("Say this is a test!", rollout_id=1, temperature=1.0),
    )
    predict = dspy.Predict("question -> answer", rollout_id=1, temperature=1.0)
    step('Predict("question -> answer", rollout_id=1, temperature=1.0)', lambda: predict(question="What is 1 + 52?"))
    plain = dspy.Predict("question -> answer")
    step(
        'predict(question="What is 1 + 52?", config={"rollout_id": 5, "temperature": 1.0})',
        lambda: plain(question="What is 1 + 52?", config={"rollout_id": 5, "temperature": 1.0}).answer,
    )

    print("\nInspecting output and usage metadata")
    step("len(lm.history)", lambda: len(lm.history))
    step("lm.history[-1].keys()", lambda: lm.history[-1].keys())
    step("lm.history[-1]['usage']", lambda: lm.history[-1]["usage"])

    print("\nThe Responses API")
    responses_lm = dspy.LM(
        _reasoning_model(model), model_type="responses", temperature=1.0, max_tokens=16000, **connection
    )
    step("LM(..., model_type='responses')('Say this is a test!')", lambda: responses_lm("Say this is a test!"))

    print("\nThrough a gateway (the Helicone guide)")
    gateway = dspy.LM(
        model,
        temperature=0.9,
        max_tokens=2000,
        extra_headers={
            "Helicone-Session-Id": str(uuid.uuid4()),
            "Helicone-Session-Name": "Question Answering",
            "Helicone-Property-Environment": "production",
        },
        extra_body={"prompt_id": "customer-support-prompt-id", "inputs": {"customer_name": "Sarah"}},
        **connection,
    )
    with dspy.context(lm=gateway):
        creative = dspy.Predict("question -> creative_answer")
        step(
            'Predict("question -> creative_answer")(question="Write a creative story about AI")',
            lambda: creative(question="Write a creative story about AI").creative_answer,
        )
        for turn in ("What is your return policy?", "How long does shipping take?", "Do you ship internationally?"):
            step(f"qa(question={turn!r}).answer", lambda turn=turn: qa(question=turn).answer)
    return failures


def _sibling_model(model: str) -> str:
    prefix, slash, _ = model.rpartition("/")
    return f"{prefix}{slash}gpt-3.5-turbo" if "gpt" in model else model


def _reasoning_model(model: str) -> str:
    prefix, slash, _ = model.rpartition("/")
    return f"{prefix}{slash}gpt-5-mini" if "gpt" in model else model


if __name__ == "__main__":
    raise SystemExit(main())
