"""The building blocks of programs: `Example`, `Prediction`, `Completions`, `Module` and the batch executor."""

from turbodspy.primitives.base_module import BaseModule
from turbodspy.primitives.example import Example
from turbodspy.primitives.module import Module
from turbodspy.primitives.prediction import Completions, Prediction

__all__ = ["BaseModule", "Completions", "Example", "Module", "Prediction"]
