"""Value types that adapters format specially (conversation history)."""

from turbodspy.adapters.types.history import History

__all__ = ["History"]
