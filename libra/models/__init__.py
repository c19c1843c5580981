"""Models: the tiny local Qwen2 factory (no hub), and the checks every command makes on a model folder."""

from libra.models.checks import check_model_dir, weights_fingerprint
from libra.models.tiny import TinyConfig, build_model, save_tiny, train_tokenizer

__all__ = ["TinyConfig", "build_model", "check_model_dir", "save_tiny", "train_tokenizer", "weights_fingerprint"]
