"""The modules programs are made of: `Predict`, `ChainOfThought`, and `Parallel` for running many at once."""

from turbodspy.predict.parallel import Parallel

__all__ = ["Parallel"]
