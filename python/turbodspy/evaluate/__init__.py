"""Evaluating programs over a dev set: `Evaluate` and its `EvaluationResult`."""

from turbodspy.evaluate.evaluate import Evaluate, EvaluationResult

__all__ = ["Evaluate", "EvaluationResult"]
