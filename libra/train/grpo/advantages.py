"""Group advantages, and the groups dynamic sampling drops: a group whose rewards all agree has zero
advantage everywhere, so it costs an update and teaches nothing."""

from __future__ import annotations

import torch

import libra_kernels as lk
from libra.train.grpo.rollouts import Rollout


def uniform_groups(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """Per group of ``n`` consecutive rollouts: whether all rewards agree (no learning signal)."""
    return rewards.float().view(-1, n).std(dim=1, unbiased=False) == 0


def assign_advantages(rollouts: list[Rollout], n: int, dynamic: bool, scale: bool = True) -> list[Rollout]:
    """Set every rollout's group advantage (``libra_kernels.group_advantages``, divided by the group's std
    when ``scale``) and return the rollouts to learn from: all of them, or with dynamic sampling only the
    groups whose rewards differ."""
    if not rollouts:
        return []
    rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
    adv = lk.group_advantages(rewards, n, scale=scale)
    for r, a in zip(rollouts, adv.tolist()):
        r.advantage = a
    if not dynamic:
        return rollouts
    uniform = uniform_groups(rewards, n)
    return [r for i, r in enumerate(rollouts) if not uniform[i // n]]
