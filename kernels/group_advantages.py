"""GRPO group-relative advantages: each reward against the other samples of its prompt.

Rewards come as consecutive groups of ``group_size`` samples of one prompt. With ``scale``,
A = (r - mean) / (std + eps) with the unbiased std; without it, A = r - mean (Dr. GRPO). A group of one
follows verl (mean 0, std 1), so its advantage is its reward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _dispatch as D


@triton.jit
def _group_adv_kernel(r_ptr, out_ptr, G, eps, SCALE: tl.constexpr, BLOCK: tl.constexpr):
    base = tl.program_id(0).to(tl.int64) * G
    offs = tl.arange(0, BLOCK)
    ok = offs < G
    r = tl.load(r_ptr + base + offs, mask=ok, other=0.0).to(tl.float32)
    many = G > 1
    mean = tl.where(many, tl.sum(r, axis=0) / G, 0.0)
    diff = tl.where(ok, r - mean, 0.0)
    std = tl.where(many, tl.sqrt(tl.sum(diff * diff, axis=0) / tl.maximum(G - 1, 1)), 1.0)
    out = diff / (std + eps) if SCALE else diff
    tl.store(out_ptr + base + offs, out, mask=ok)


def _torch_group_advantages(rewards, group_size, scale, eps):
    r = rewards.float().view(-1, group_size)
    if group_size == 1:
        mean, std = torch.zeros_like(r), torch.ones_like(r)
    else:
        mean, std = r.mean(-1, keepdim=True), r.std(-1, keepdim=True)
    diff = r - mean
    return (diff / (std + eps) if scale else diff).view(-1)


def group_advantages(rewards, group_size, *, scale=True, eps=1e-6, backend=None):
    """Advantages [B] (fp32) for rewards [B] laid out as B / group_size consecutive groups."""
    D.check_float("rewards", rewards)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B], got shape {tuple(rewards.shape)}")
    if int(group_size) != group_size or group_size < 1 or rewards.shape[0] % group_size:
        raise ValueError(f"group_size={group_size} must be a positive integer dividing len(rewards)={rewards.shape[0]}")
    group_size = int(group_size)
    if D.resolve_backend(backend, rewards.device) == "torch":
        return _torch_group_advantages(rewards, group_size, scale, eps)
    out = torch.empty(rewards.shape, dtype=torch.float32, device=rewards.device)
    groups = rewards.shape[0] // group_size
    if groups:
        _group_adv_kernel[(groups,)](rewards.contiguous(), out, group_size, float(eps), SCALE=bool(scale),
                                     BLOCK=triton.next_power_of_2(group_size))
    return out
