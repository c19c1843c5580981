"""Rollout engines: one interface (``types.Engine``), vLLM for speed, transformers as reference.

``VLLMEngine`` is imported on first use, so importing this package never imports vLLM (seconds of
start-up, and absent from environments that only judge with transformers).
"""

from libra.rollout.hf_engine import HFEngine
from libra.rollout.logprob_check import logprob_mismatch, sequence_logprobs
from libra.rollout.types import Engine, Generation, Prompt, Sample, SamplingParams, prompt_token_ids

__all__ = ["Engine", "Generation", "HFEngine", "Prompt", "Sample", "SamplingParams", "VLLMEngine",
           "logprob_mismatch", "prompt_token_ids", "sequence_logprobs"]


def __getattr__(name: str):
    if name == "VLLMEngine":
        from libra.rollout.vllm_engine import VLLMEngine

        return VLLMEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
