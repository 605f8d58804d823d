"""The modules programs are made of: `Predict`, `ChainOfThought`, and `Parallel` for running many at once."""

from turbodspy.predict.chain_of_thought import ChainOfThought
from turbodspy.predict.parallel import Parallel
from turbodspy.predict.predict import Predict

__all__ = ["ChainOfThought", "Parallel", "Predict"]
