"""Signatures: what a module takes and produces (DSPy 3.4.1's `dspy.signatures`)."""

from turbodspy._core import SignatureSyntaxError
from turbodspy.signatures.field import InputField, OldField, OldInputField, OldOutputField, OutputField
from turbodspy.signatures.signature import Signature, SignatureMeta, ensure_signature, infer_prefix, make_signature

__all__ = [
    "InputField",
    "OldField",
    "OldInputField",
    "OldOutputField",
    "OutputField",
    "Signature",
    "SignatureMeta",
    "SignatureSyntaxError",
    "ensure_signature",
    "infer_prefix",
    "make_signature",
]
