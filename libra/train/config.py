"""Config sections shared by the trainers (each trainer adds its own section next to its loop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ModelConfig:
    path: str = ""  # a transformers model directory (safetensors) or hub id to start from
    trust_remote_code: bool = False  # run the model repo's own Python code (off: only transformers' classes)
    activation_checkpointing: bool = False  # recompute each block's activations in backward (memory for time)
    liger: bool = False  # Liger-Kernel RMSNorm/RoPE/SwiGLU (CUDA only)
    mixed_precision: bool | None = None  # bf16 compute with fp32 master weights; default: on for CUDA
    # "sdpa" packs examples with a block-diagonal mask (O(L^2) memory per row); "flash_attention_2" packs
    # through position_ids only (varlen kernels; CUDA).
    attn_implementation: Literal["sdpa", "flash_attention_2"] = "sdpa"


@dataclass
class RunConfig:
    out: str = "runs/train"  # run directory: config, checkpoints, metrics.jsonl, the exported model
    seed: int = 0  # seeds data order, dropout and sampling; a resumed run continues the same streams
    global_batch_size: int = 256  # sequences per optimizer step, whatever the world size
    micro_batch_size: int = 1  # packed rows per forward/backward on each rank
    # GRPO passes: pack rollouts into micro-batches of at most this many tokens, one row each, no padding
    # (0: micro_batch_size rollouts per micro-batch, padded to the longest)
    max_tokens_per_micro_batch: int = 0
    # how a token budget cuts them (libra/train/rl_batches.py): one packed row, length-sorted padded rows, or
    # auto (packed with flash-attention varlen, bucketed with sdpa, whose masked kernel pays for packing)
    rl_layout: Literal["auto", "packed", "bucketed"] = "auto"
    max_steps: int | None = None  # stop early (None: run the configured epochs)
    save_every: int = 0  # optimizer steps between checkpoints (0: only at the end)
    keep_last: int = 2  # checkpoints kept on disk, older ones deleted once a newer one is complete (0: all)
    tensorboard: bool = True  # also write tensorboard scalars (OUT/tensorboard) beside metrics.jsonl
    export: bool = True  # write the final model as a transformers directory (OUT/final)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available, else CPU
    # A rerun into a run.out with checkpoints resumes; with other settings than its config.yaml it stops
    # (naming them) unless this is set (the old config.yaml is then kept as config.before-step-N.yaml).
    allow_config_change: bool = False
