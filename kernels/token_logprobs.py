"""Per-token log-probabilities (and entropy) from logits: ``log_softmax(logits / T)[target]``.

Triton: one program per row streams the vocabulary in tiles, keeping an online log-sum-exp in fp32
(one read of the logits); the backward re-reads the row once and writes the gradient tile by tile in
the logits' dtype. Only two fp32 numbers per row (lse, entropy) are saved between the passes.
PyTorch: the same math on row chunks whose fp32 working set is bounded (see ``row_chunks``), so
neither backend ever holds an fp32 copy of the whole [N, V] input.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _dispatch as D
from ._vocab_math import (
    chunk_grad_,
    combine,
    element_stats,
    finish_stats,
    log_softmax_,
    log_softmax_stats,
    merge_stats,
    softmax_grad,
    softmax_grad_,
)

BLOCK_V = 4096  # vocabulary tile per loop iteration (elements); 16 KiB of fp32 per row tile
NUM_WARPS = 8

# ----------------------------------------------------------------------------- Triton kernels


@triton.jit
def _token_logprobs_fwd(
    logits_ptr, stride_row, targets_ptr, logp_ptr, lse_ptr, ent_ptr, V, inv_t, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride_row
    target = tl.load(targets_ptr + row)
    cols0 = tl.arange(0, BLOCK)
    m = tl.full([BLOCK], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK], tl.float32)
    t = tl.zeros([BLOCK], tl.float32)
    z_target = 0.0
    for start in range(0, V, BLOCK):
        cols = start + cols0
        z = tl.load(base + cols, mask=cols < V, other=float("-inf")).to(tl.float32) * inv_t
        zm, zs, zt = element_stats(z)
        m, s, t = combine(m, s, t, zm, zs, zt)
        z_target += tl.sum(tl.where(cols == target, z, 0.0))
    mm, ss, tt = merge_stats(m, s, t, 0)
    lse, ent = finish_stats(mm, ss, tt)
    tl.store(logp_ptr + row, z_target - lse)
    tl.store(lse_ptr + row, lse)
    tl.store(ent_ptr + row, ent)


@triton.jit
def _token_logprobs_bwd(
    logits_ptr, stride_row, grad_ptr, stride_grad, targets_ptr, lse_ptr, ent_ptr, g_ptr, h_ptr, V, inv_t,
    HAS_H: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    target = tl.load(targets_ptr + row)
    lse = tl.load(lse_ptr + row)
    ent = tl.load(ent_ptr + row)
    g = tl.load(g_ptr + row)
    h = tl.load(h_ptr + row) if HAS_H else 0.0
    cols0 = tl.arange(0, BLOCK)
    for start in range(0, V, BLOCK):
        cols = start + cols0
        valid = cols < V
        z = tl.load(logits_ptr + row * stride_row + cols, mask=valid, other=float("-inf")).to(tl.float32) * inv_t
        dz = softmax_grad(z, cols == target, lse, ent, g, h, HAS_H) * inv_t
        tl.store(grad_ptr + row * stride_grad + cols, dz.to(grad_ptr.dtype.element_ty), mask=valid)


def _block(vocab: int) -> int:
    return min(BLOCK_V, triton.next_power_of_2(vocab))


class _TritonTokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, inv_t):
        n, v = logits.shape
        out = torch.empty((3, n), dtype=torch.float32, device=logits.device)
        if n:
            _token_logprobs_fwd[(n,)](logits, logits.stride(0), targets, out[0], out[1], out[2], v, inv_t,
                                      BLOCK=_block(v), num_warps=NUM_WARPS)
        logp, lse, ent = out
        ctx.save_for_backward(logits, targets, lse, ent)
        ctx.inv_t = inv_t
        return logp, ent

    @staticmethod
    def backward(ctx, g, h):
        logits, targets, lse, ent = ctx.saved_tensors
        n, v = logits.shape
        grad = torch.empty_like(logits)
        g = (torch.zeros_like(lse) if g is None else g).float().contiguous()
        has_h = h is not None
        h = h.float().contiguous() if has_h else g
        if n:
            _token_logprobs_bwd[(n,)](logits, logits.stride(0), grad, grad.stride(0), targets, lse, ent, g, h, v,
                                      ctx.inv_t, HAS_H=has_h, BLOCK=_block(v), num_warps=NUM_WARPS)
        return grad, None, None


# ----------------------------------------------------------------------------- PyTorch backend


def _direct(x: torch.Tensor, inv_t: float) -> bool:
    """fp32 logits at T = 1 go straight into one fused (log_)softmax: no scaled copy is needed. Other
    inputs are copied to fp32 once and transformed in place (one chunk buffer, not two)."""
    return inv_t == 1.0 and x.dtype == torch.float32


def _log_softmax_fp32(x: torch.Tensor, inv_t: float) -> torch.Tensor:
    if _direct(x, inv_t):
        return torch.log_softmax(x, dim=-1)
    return log_softmax_(x.to(torch.float32, copy=True).mul_(inv_t))


def _torch_grad_chunk(x, targets, ent, g, h, inv_t) -> torch.Tensor:
    if h is None and _direct(x, inv_t):  # softmax directly: one pass fewer than exp(log_softmax)
        return softmax_grad_(torch.softmax(x, dim=-1), targets, g, inv_t)
    return chunk_grad_(_log_softmax_fp32(x, inv_t), targets, ent, g, h, inv_t)


class _TorchTokenLogprobs(torch.autograd.Function):
    """Chunked over rows: saves the input (plus the entropy) and recomputes log_softmax per chunk."""

    @staticmethod
    def forward(ctx, logits, targets, inv_t, with_entropy):
        n, v = logits.shape
        logp = logits.new_empty(n, dtype=torch.float32)
        ent = torch.empty_like(logp) if with_entropy else None
        for sl in D.row_chunks(n, v):
            logp[sl], e = log_softmax_stats(_log_softmax_fp32(logits[sl], inv_t), targets[sl], with_entropy)
            if with_entropy:
                ent[sl] = e
        ctx.save_for_backward(logits, targets, ent)
        ctx.inv_t = inv_t
        return logp, ent

    @staticmethod
    def backward(ctx, g, h):
        logits, targets, ent = ctx.saved_tensors
        n, v = logits.shape
        grad = torch.empty_like(logits)
        g = torch.zeros(n, dtype=torch.float32, device=logits.device) if g is None else g.float()
        for sl in D.row_chunks(n, v):
            grad[sl] = _torch_grad_chunk(logits[sl], targets[sl], None if ent is None else ent[sl], g[sl],
                                         None if h is None else h[sl].float(), ctx.inv_t)
        return grad, None, None, None


# ----------------------------------------------------------------------------- public API


def token_logprobs(logits, targets, *, temperature=1.0, return_entropy=False, backend=None):
    """Log-probability of ``targets`` under ``softmax(logits / temperature)``, in fp32.

    logits: [..., V] (any float dtype; read as is, accumulated in fp32), targets: [...] integer in [0, V).
    Returns ``logp[...]`` or ``(logp, entropy)``; both fp32 and differentiable w.r.t. ``logits``.
    """
    D.check_float("logits", logits)
    if logits.dim() < 1:
        raise ValueError(f"logits must have a vocabulary dimension, got shape {tuple(logits.shape)}")
    D.check_temperature(temperature)
    batch_shape, vocab = tuple(logits.shape[:-1]), logits.shape[-1]
    D.check_targets(targets, batch_shape, vocab, f"logits of shape {tuple(logits.shape)}")
    D.check_same_device(logits=logits, targets=targets)
    which = D.resolve_backend(backend, logits.device)
    flat = logits.reshape(-1, vocab)
    if flat.stride(-1) != 1:
        flat = flat.contiguous()
    tgt = targets.reshape(-1).to(torch.int64).contiguous()
    inv_t = 1.0 / float(temperature)
    if which == "triton":
        logp, ent = _TritonTokenLogprobs.apply(flat, tgt, inv_t)
    else:
        logp, ent = _TorchTokenLogprobs.apply(flat, tgt, inv_t, return_entropy)
    logp = logp.view(batch_shape)
    return (logp, ent.view(batch_shape)) if return_entropy else logp
