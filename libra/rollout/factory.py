"""Choosing and starting an engine by name, with the checks users need before a 20-second start."""

from __future__ import annotations

from libra.models.checks import check_model_dir

ENGINES = ("vllm", "hf")


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
