"""`python -m turbodspy demo`: every documented call of the seeds runs against the local server."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_every_seed_call_offline(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "turbodspy", "demo", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "local server" in out and "all steps ran" in out and "FAILED" not in out
    for snippet in (
        'lm("Say this is a test!", temperature=0.7)',
        "ChainOfThought('question -> answer')",
        "with dspy.context(lm=LM('openai/gpt-3.5-turbo'))",
        "model_type='responses'",
        'Predict("question -> creative_answer")',
        "lm.history[-1].keys()",
    ):
        assert snippet in out
    assert "'prompt', 'messages', 'kwargs', 'response', 'outputs', 'usage', 'cost', 'timestamp', 'uuid'" in out


def test_demo_refuses_unknown_commands():
    result = subprocess.run([sys.executable, "-m", "turbodspy", "nonsense"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown command" in result.stderr
