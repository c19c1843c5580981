"""Model construction that needs no hub: the tiny local Qwen2 factory."""

from libra.models.tiny import TinyConfig, build_model, save_tiny, train_tokenizer

__all__ = ["TinyConfig", "build_model", "save_tiny", "train_tokenizer"]
