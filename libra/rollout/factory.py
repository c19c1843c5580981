"""Choosing and starting an engine by name, with the checks users need before a 20-second start."""

from __future__ import annotations

from pathlib import Path

ENGINES = ("vllm", "hf")


def check_model_dir(model: str) -> Path:
    """A local model directory must exist and hold ``config.json``; anything else is a hub id, which only
    works where the hub is reachable (the error then comes from the loader)."""
    path = Path(model)
    looks_local = path.is_absolute() or model.startswith(".") or path.exists() or model.count("/") != 1
    if looks_local:
        if not path.is_dir():
            raise FileNotFoundError(f"model path {model!r} does not exist (expected a directory written by "
                                    "save_pretrained, or a hub id like org/name)")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model path {model!r} has no config.json: not a transformers model directory")
    return path


def make_engine(kind: str, model: str, *, dtype: str | None = None, seed: int = 0, max_model_len: int | None = None,
                gpu_memory_utilization: float = 0.85, trust_remote_code: bool = False, **kwargs):
    """``kind`` "vllm" or "hf". ``dtype`` defaults to bfloat16 on CUDA and float32 on CPU (vLLM's CPU
    backend has no fast bf16 on AVX2)."""
    import torch

    if kind not in ENGINES:
        raise ValueError(f"unknown engine {kind!r}; choose one of {', '.join(ENGINES)}")
    check_model_dir(model)
    dtype = dtype or ("bfloat16" if torch.cuda.is_available() else "float32")
    if kind == "hf":
        from libra.rollout.hf_engine import HFEngine

        return HFEngine(model, dtype=dtype, trust_remote_code=trust_remote_code, **kwargs)
    from libra.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(model, dtype=dtype, seed=seed, max_model_len=max_model_len,
                      gpu_memory_utilization=gpu_memory_utilization, trust_remote_code=trust_remote_code, **kwargs)
