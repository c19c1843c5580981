"""Rollout engines: one interface (``types.Engine``), vLLM for speed, transformers as reference."""

from libra.rollout.hf_engine import HFEngine
from libra.rollout.types import Engine, Generation, Prompt, Sample, SamplingParams, prompt_token_ids

__all__ = ["Engine", "Generation", "HFEngine", "Prompt", "Sample", "SamplingParams", "prompt_token_ids"]
