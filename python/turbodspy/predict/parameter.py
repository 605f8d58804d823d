"""`Parameter`: marks the modules whose state (demos, signature, LM) an optimizer tunes and `save` writes."""


class Parameter:
    """A learnable part of a program; `Predict` is the one every program is made of."""
