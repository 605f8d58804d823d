"""Language-model clients: `LM`, `BaseLM`, the response cache and call history."""
