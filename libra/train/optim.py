"""AdamW and the learning-rate schedules of the paper (Appendix D): linear warmup over a fraction of
the steps, then cosine decay to a floor (SFT: 1e-5 -> 1e-6) or constant (GRPO: 1e-6)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from libra.config import ConfigError


@dataclass
class OptimConfig:
    lr: float = 1e-5  # peak AdamW learning rate, reached after the warmup
    min_lr: float = 1e-6  # where the cosine or linear decay ends, at the last optimizer step
    schedule: Literal["cosine", "linear", "constant"] = "cosine"  # the decay after the warmup
    warmup_ratio: float = 0.03  # share of the optimizer steps spent ramping linearly up to lr
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    betas: tuple[float, ...] = (0.9, 0.95)  # AdamW's moment decay rates
    eps: float = 1e-8  # AdamW's denominator epsilon
    grad_clip: float = 1.0  # clip the global gradient norm to this (> 0; the norm is logged either way)

    def check(self) -> None:
        if not self.grad_clip > 0:  # clip_grad_norm_ at 0 would zero every gradient, not turn clipping off
            raise ConfigError("config", "optim.grad_clip", f"must be > 0, got {self.grad_clip}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("config", "optim.warmup_ratio", f"must lie in [0, 1), got {self.warmup_ratio}")


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimizer step ``step`` (0-based) of ``total``."""
    warmup = math.ceil(cfg.warmup_ratio * total)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    floor = cfg.min_lr / cfg.lr
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return floor + (1 - floor) * shape


def first_changed_step(cfg: OptimConfig, old_total: int, new_total: int, start: int) -> int | None:
    """The first step in [start, new_total) whose rate differs between the schedule over ``old_total`` steps and
    the one over ``new_total`` (None: all the same, as for a constant schedule past its warmup). The schedule
    is a function of the run's length, so a resume that changes the length asks which of its steps move."""
    return next((step for step in range(start, new_total)
                 if lr_factor(step, old_total, cfg) != lr_factor(step, new_total, cfg)), None)


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig, total_steps: int):
    """AdamW (no decay on biases and norms) and its LambdaLR scheduler."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # foreach=False: the reference loop is the same on DTensors and plain tensors, keeping 1- and N-rank
    # runs numerically alike.
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total_steps, cfg))
    return opt, sched
