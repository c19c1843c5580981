"""Log-softmax statistics over a vocabulary, shared by every log-prob op.

Everything here works on fp32 *scaled* logits ``z = logits / T``. Two views of the same math:

* PyTorch, on one chunk of rows ``z[C, V]`` (the PyTorch backends stream over such chunks so that no
  [N, V] fp32 tensor ever exists);
* Triton ``@jit`` helpers for an *online* pass over vocabulary tiles, used by the Triton kernels.

The online pass summarises any set of logits by ``(m, s, t)``: the max ``m``, ``s = sum exp(z - m)`` and
``t = sum exp(z - m) (z - m)``; then ``lse = m + log s`` and the entropy is ``log s - t / s``. Summaries
merge associatively (``combine``), so tiles, lanes and vocabulary splits all reduce the same way, and
carrying ``t`` relative to the max (instead of ``sum p z``) keeps it bounded for huge logits.

Gradients: with ``p = softmax(z)``, ``H`` the entropy and upstream grads ``g`` (log-prob) and ``h``
(entropy), ``dL/dz_j = g (1[j = target] - p_j) - h p_j (z_j - lse + H)``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# ----------------------------------------------------------------------------- PyTorch, one chunk


def log_softmax_(z: torch.Tensor) -> torch.Tensor:
    """``log_softmax(z, -1)`` written over ``z`` (aten's out= variant): one fused pass, no second buffer.

    Aliasing is safe because the kernel reduces each row (max, sum of exp) before writing any of it, and
    then writes element j from element j only; tests/kernels/test_vocab_math.py checks it at V = 151936.
    """
    return torch._log_softmax(z, -1, False, out=z)


def chunk_log_softmax(z: torch.Tensor, targets: torch.Tensor, with_entropy: bool):
    """(log_softmax(z), logp, entropy | None) of every row of the fp32 chunk ``z``, overwriting ``z``.

    ``log_softmax`` is one fused pass on CPU (``logsumexp`` is several and ~4x slower), and its output is
    all the backward needs: ``softmax = exp(log_softmax)`` is built in place from it.
    """
    ls = log_softmax_(z)
    return (ls, *log_softmax_stats(ls, targets, with_entropy))


def log_softmax_stats(ls: torch.Tensor, targets: torch.Tensor, with_entropy: bool):
    """(logp, entropy | None) of every row of an fp32 log-softmax chunk."""
    logp = ls.gather(-1, targets[:, None]).squeeze(-1)
    if not with_entropy:
        return logp, None
    # p * log p with p = 0 (a -inf logit) is 0; only that product can be NaN here.
    return logp, -ls.exp().mul_(ls).nan_to_num_(nan=0.0).sum(-1)


def softmax_grad_(p: torch.Tensor, targets, g, scale: float) -> torch.Tensor:
    """Overwrite the softmax chunk ``p`` with ``scale * dL/dz`` for a log-prob upstream grad ``g``."""
    dz = p.mul_(g[:, None] * -scale)
    return dz.scatter_add_(1, targets[:, None], (g * scale)[:, None].to(dz.dtype))


def chunk_grad_(ls, targets, ent, g, h, scale: float) -> torch.Tensor:
    """Overwrite the log-softmax chunk ``ls`` with ``scale * dL/dz`` for upstream grads ``g`` (log-prob)
    and ``h`` (entropy, or None)."""
    if h is None:
        return softmax_grad_(ls.exp_(), targets, g, scale)
    p = ls.exp()
    # -(g + h (log p + H)) p; where p = 0 the bracket may be +-inf or NaN, the product is 0.
    dz = ls.add_(ent[:, None]).mul_(h[:, None]).add_(g[:, None]).mul_(p).nan_to_num_(nan=0.0).mul_(-scale)
    return dz.scatter_add_(1, targets[:, None], (g * scale)[:, None].to(dz.dtype))


# ----------------------------------------------------------------------------- Triton helpers


@triton.jit
def combine(m1, s1, t1, m2, s2, t2):
    """Merge two (m, s, t) summaries elementwise; a summary with s = 0 (all -inf) contributes nothing."""
    m = tl.maximum(m1, m2)
    shift = tl.where(m == float("-inf"), 0.0, m)
    a1 = tl.exp(m1 - shift)
    a2 = tl.exp(m2 - shift)
    # s > 0 implies the matching m is finite, so (m_i - shift) * s_i is only used where it is defined.
    t = a1 * t1 + a2 * t2
    t += tl.where(s1 > 0, a1 * (m1 - shift) * s1, 0.0) + tl.where(s2 > 0, a2 * (m2 - shift) * s2, 0.0)
    return m, a1 * s1 + a2 * s2, t


@triton.jit
def element_stats(z):
    """The (m, s, t) summary of single logits (-inf where padded)."""
    return z, tl.where(z == float("-inf"), 0.0, 1.0), tl.zeros_like(z)


@triton.jit
def merge_stats(m, s, t, axis: tl.constexpr):
    """Reduce (m, s, t) summaries along ``axis``."""
    mm = tl.max(m, axis=axis)
    mm_k = tl.expand_dims(mm, axis)
    shift = tl.where(mm_k == float("-inf"), 0.0, mm_k)
    alpha = tl.exp(m - shift)
    s_out = tl.sum(alpha * s, axis=axis)
    t_out = tl.sum(alpha * t + tl.where(s > 0, alpha * (m - shift) * s, 0.0), axis=axis)
    return mm, s_out, t_out


@triton.jit
def finish_stats(m, s, t):
    """(lse, entropy) from merged accumulators."""
    log_s = tl.log(s)
    return m + log_s, log_s - t / s


@triton.jit
def softmax_grad(z, is_target, lse, ent, g, h, HAS_H: tl.constexpr):
    """dL/dz for a tile of scaled logits (broadcast row quantities ``lse``, ``ent``, ``g``, ``h``)."""
    zl = z - lse
    p = tl.exp(zl)
    dz = tl.where(is_target, g, 0.0) - g * p
    if HAS_H:
        dz -= tl.where(p > 0, h * p * (zl + ent), 0.0)
    return dz


# ----------------------------------------------------------------------------- PyTorch, merging splits


def merge_partials(m: torch.Tensor, s: torch.Tensor, t: torch.Tensor):
    """Merge [S, N] partial (m, s, t) from S vocabulary splits into (lse[N], entropy[N])."""
    mm = m.max(dim=0).values
    shift = torch.where(torch.isinf(mm) & (mm < 0), torch.zeros_like(mm), mm)
    alpha = torch.exp(m - shift)
    s_out = (alpha * s).sum(0)
    t_out = (alpha * t + torch.where(s > 0, alpha * (m - shift) * s, torch.zeros_like(s))).sum(0)
    log_s = torch.log(s_out)
    return mm + log_s, log_s - t_out / s_out
