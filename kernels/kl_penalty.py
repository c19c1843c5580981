"""KL estimators between the policy and a reference policy, per token, in fp32.

k1 = logp - ref; k2 = 0.5 (logp - ref)^2; k3 = exp(ref - logp) - (ref - logp) - 1 (Schulman's unbiased,
always >= 0 estimator; the exponent clamped to [-20, 20] and the result to [-10, 10], as verl does);
abs = |logp - ref|. ``kl_terms`` (Triton) also returns d kl / d logp, which the fused GRPO kernels use;
d kl / d ref is its negative for every kind.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _dispatch as D

KL_KINDS = ("k1", "k2", "k3", "abs")
BLOCK = 1024


def kl_penalty_torch(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Differentiable PyTorch estimator on fp32 copies of the inputs."""
    d = logp.float() - ref_logp.float()
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d * d
    if kind == "abs":
        return d.abs()
    u = torch.clamp(-d, -20.0, 20.0)
    return torch.clamp(torch.exp(u) - u - 1.0, -10.0, 10.0)


@triton.jit
def kl_terms(logp, ref, KIND: tl.constexpr):
    """(kl, d kl / d logp) for fp32 tensors; KIND indexes KL_KINDS."""
    d = logp - ref
    if KIND == 0:
        kl = d
        dkl = tl.full(d.shape, 1.0, tl.float32)
    elif KIND == 1:
        kl = 0.5 * d * d
        dkl = d
    elif KIND == 2:
        u_raw = -d
        u = tl.minimum(tl.maximum(u_raw, -20.0), 20.0)
        e = tl.exp(u)
        k = e - u - 1.0
        kl = tl.minimum(tl.maximum(k, -10.0), 10.0)
        live = (u_raw >= -20.0) & (u_raw <= 20.0) & (k >= -10.0) & (k <= 10.0)
        dkl = tl.where(live, 1.0 - e, 0.0)
    else:
        kl = tl.abs(d)
        dkl = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
    return kl, dkl


@triton.jit
def _kl_fwd(logp_ptr, ref_ptr, kl_ptr, dkl_ptr, n, KIND: tl.constexpr, WRITE_GRAD: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    logp = tl.load(logp_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    ref = tl.load(ref_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    kl, dkl = kl_terms(logp, ref, KIND)
    tl.store(kl_ptr + offs, kl, mask=ok)
    if WRITE_GRAD:
        tl.store(dkl_ptr + offs, dkl, mask=ok)


class _TritonKL(torch.autograd.Function):
    """Writes d kl / d logp in the same pass as the forward; the backward is one multiply."""

    @staticmethod
    def forward(ctx, logp, ref, kind_id):
        n = logp.numel()
        kl = torch.empty(logp.shape, dtype=torch.float32, device=logp.device)
        want = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        dkl = torch.empty_like(kl) if want else kl
        if n:
            _kl_fwd[(triton.cdiv(n, BLOCK),)](logp, ref, kl, dkl, n, KIND=kind_id, WRITE_GRAD=want, BLOCK=BLOCK)
        ctx.save_for_backward(dkl)
        ctx.dtypes = (logp.dtype, ref.dtype)
        return kl

    @staticmethod
    def backward(ctx, g):
        (dkl,) = ctx.saved_tensors
        d = g * dkl
        return d.to(ctx.dtypes[0]), (-d).to(ctx.dtypes[1]), None


def kl_penalty(logp, ref_logp, kind="k3", backend=None):
    """Per-token KL estimate between policy log-probs ``logp`` and reference ``ref_logp`` (same shape), fp32."""
    D.check_choice("kind", kind, KL_KINDS)
    D.check_float("logp", logp)
    D.check_float("ref_logp", ref_logp)
    D.check_shape("ref_logp", ref_logp, tuple(logp.shape), f"logp of shape {tuple(logp.shape)}")
    D.check_same_device(logp=logp, ref_logp=ref_logp)
    if D.resolve_backend(backend, logp.device) == "torch":
        return kl_penalty_torch(logp, ref_logp, kind)
    return _TritonKL.apply(logp.contiguous(), ref_logp.contiguous(), KL_KINDS.index(kind))
