"""GRPO loss straight from the LM head: hidden states in, scalar loss out, logits never materialised.

The loss is a scalar, and every token's d loss / d logp depends only on that token (its ratio, KL and
aggregation weight), so the gradients w.r.t. hidden, weight and bias are computed in the *forward* call
for an upstream gradient of 1; ``backward`` only scales them (in place) by the real upstream gradient.

* PyTorch: one pass over token chunks; each chunk's fp32 logits are built once, their log_softmax gives the log-probs,
  the per-token loss gradient (autograd on the tiny per-token loss) and then dL/dlogits in place, which
  feeds ``d_hidden`` and ``d_weight``. The matmul work equals the naive fwd+bwd (6 N H V FLOPs).
* Triton: the stats kernel (log-sum-exp, target logit, entropy), the fused GRPO kernel for the loss and
  d loss / d logp, then the gradient kernel that recomputes logits tiles and accumulates d_hidden and
  d_weight; nothing of size [N, V] exists at any point.
"""

from __future__ import annotations

import torch

from . import _dispatch as D
from ._vocab_math import chunk_grad_, chunk_log_softmax
from .grpo_loss import GRPOBatch, prepare_grpo, sums_to_stats, torch_sums, triton_sums, with_logp
from .linear_token_logprobs import (
    _weight_slices,
    chunk_backprop,
    chunk_logits,
    prepare_linear,
    triton_linear_grad,
    triton_linear_stats,
)


def _torch_chunk(h_c, weight, bias, targets, tokens: dict, cfg, inv_t, slices, want_entropy, grads, first):
    """Sums, entropy and d_hidden of one token chunk; its fp32 [rows, V] buffer lives only in here.

    ``tokens`` holds the chunk's flat old/adv/mask/weights/ref; ``grads`` the (d_weight, d_bias) to
    accumulate into, or None when no gradient is wanted.
    """
    ls, logp, ent = chunk_log_softmax(chunk_logits(h_c, weight, bias, inv_t, slices), targets, want_entropy)
    with torch.enable_grad():
        logp.requires_grad_(grads is not None)
        part = torch_sums(logp, tokens["old"], tokens["adv"], tokens["mask"], tokens["weights"], tokens["ref"], cfg)
        if grads is None:
            return part.detach(), ent, None
        (g,) = torch.autograd.grad(part[0], logp)
    dz = chunk_grad_(ls, targets, None, g, None, inv_t)
    return part.detach(), ent, chunk_backprop(dz, h_c, weight, *grads, slices, first)


def _torch_forward(hidden, weight, bias, targets, batch: GRPOBatch, inv_t, want_entropy, want_grad):
    """(sums, entropy | None, grads | None) in one pass over token chunks (two with sequence-level
    ratios: GSPO needs every token's log-prob before any token's loss)."""
    n = hidden.shape[0]
    slices = _weight_slices(weight)
    if batch.sequences is not None:
        logp = torch.empty(n, dtype=torch.float32, device=hidden.device)
        for sl in D.row_chunks(n, weight.shape[0]):
            logp[sl] = chunk_log_softmax(chunk_logits(hidden[sl], weight, bias, inv_t, slices), targets[sl], False)[1]
        batch = with_logp(batch, logp.view(batch.old.shape))
    flat = {"old": batch.old, "mask": batch.mask, "weights": batch.weights,
            "adv": batch.adv if batch.adv.dim() == 2 else batch.adv[:, None].expand_as(batch.old),
            "ref": None if batch.ref is None else batch.ref.float()}
    flat = {k: None if t is None else t.reshape(-1) for k, t in flat.items()}
    f32 = dict(dtype=torch.float32, device=hidden.device)
    sums = torch.zeros(6, **f32)
    ent = torch.empty(n, **f32) if want_entropy else None
    dh = torch.empty(hidden.shape, **f32) if want_grad else None
    dw = torch.empty(weight.shape, **f32) if want_grad else None
    db = torch.empty(weight.shape[0], **f32) if want_grad and bias is not None else None
    for sl in D.row_chunks(n, weight.shape[0]):
        tokens = {k: None if t is None else t[sl] for k, t in flat.items()}
        part, e, dh_c = _torch_chunk(hidden[sl], weight, bias, targets[sl], tokens, batch.cfg, inv_t, slices,
                                     want_entropy, (dw, db) if want_grad else None, first=sl.start == 0)
        sums += part
        if want_entropy:
            ent[sl] = e
        if want_grad:
            dh[sl] = dh_c
    return sums, ent, (dh, dw, db) if want_grad else None


def _triton_forward(hidden, weight, bias, targets, batch: GRPOBatch, inv_t, want_grad):
    logp, lse, ent = triton_linear_stats(hidden, weight, bias, targets, inv_t)
    logp = logp.view(batch.old.shape)
    sums, dpg, dkl = triton_sums(logp, with_logp(batch, logp), want_grad)
    if not want_grad:
        return sums, ent, None
    g = (dpg if dkl is None else dpg + dkl).reshape(-1)
    return sums, ent, triton_linear_grad(hidden, weight, bias, targets, lse, ent, g, None, inv_t)


class _LinearGRPO(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, batch, inv_t, want_entropy, use_triton):
        want_grad = any(ctx.needs_input_grad[:3])
        if use_triton:
            sums, ent, grads = _triton_forward(hidden, weight, bias, targets, batch, inv_t, want_grad)
        else:
            sums, ent, grads = _torch_forward(hidden, weight, bias, targets, batch, inv_t, want_entropy, want_grad)
        if grads is not None:  # cast now so the fp32 buffers are freed before the backward
            dh, dw, db = grads
            ctx.grads = (dh.to(hidden.dtype), dw.to(weight.dtype), None if db is None else db.to(bias.dtype))
        ctx.mark_non_differentiable(sums)
        if ent is not None:
            ctx.mark_non_differentiable(ent)
        return sums[0].clone(), sums, ent

    @staticmethod
    def backward(ctx, g, _sums, _ent):
        # The saved gradients are used once; scaling them in place avoids a second [V, H] buffer.
        dh, dw, db = ctx.grads
        del ctx.grads
        return dh.mul_(g), dw.mul_(g), None if db is None else db.mul_(g), None, None, None, None, None


def linear_grpo_loss(hidden, weight, targets, old_logp, advantages, mask, *, bias=None, temperature=1.0,
                     ref_logp=None, eps_low=0.2, eps_high=0.28, dual_clip=None, kl_coef=0.0, kl_kind="k3",
                     agg="seq-mean-token-mean", segment_ids=None, norm_len=None, ratio_level="token",
                     return_entropy=False, backend=None):
    """``grpo_loss(linear_token_logprobs(hidden, weight, targets, ...), ...)`` fused; returns ``(loss, stats)``.

    hidden [B, T, H], weight [V, H], targets [B, T]; the other arguments are those of ``grpo_loss``.
    Differentiable w.r.t. hidden, weight and bias. ``stats`` gains "entropy" (masked mean of the
    per-token entropy at this temperature) when ``return_entropy``.
    """
    D.check_float("hidden", hidden)
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [B, T, H], got shape {tuple(hidden.shape)}")
    h2, w, b, tgt, batch_shape = prepare_linear(hidden, weight, targets, bias, temperature)
    batch = prepare_grpo(batch_shape, hidden.device, old_logp, advantages, mask, ref_logp, eps_low=eps_low,
                         eps_high=eps_high, dual_clip=dual_clip, kl_coef=kl_coef, kl_kind=kl_kind, agg=agg,
                         segment_ids=segment_ids, norm_len=norm_len, ratio_level=ratio_level)
    use_triton = D.resolve_backend(backend, hidden.device) == "triton"
    loss, sums, ent = _LinearGRPO.apply(h2, w, b, tgt, batch, 1.0 / float(temperature), return_entropy, use_triton)
    stats = sums_to_stats(sums, batch.ref is not None)
    if return_entropy:
        tokens = batch.mask.sum()
        stats["entropy"] = torch.where(tokens > 0, (ent.view(batch_shape) * batch.mask).sum() / tokens.clamp_min(1e-30),
                                       torch.zeros_like(tokens))
    return loss, stats
