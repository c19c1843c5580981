"""The clipped GRPO/PPO policy loss with clip-higher, optional dual clip and a KL penalty, fused; and the
loss family around it (aggregations, sequence-level ratios) as keywords of the same op.

Per token: ratio = exp(clamp(logp - old, -20, 20)); pg = max(-A ratio, -A clip(ratio, 1 - eps_low,
1 + eps_high)); with dual clip c and A < 0, pg = min(pg, -A c); loss = pg + kl_coef * KL(logp, ref).
Aggregation is expressed as per-token weights ``w`` (mask times a per-sequence factor), so every mode is
``sum(w * loss)`` and the kernel never needs a second pass (``AGGREGATIONS``; count_s = unmasked tokens of
sequence s, n_seqs = sequences with at least one unmasked token, verl's convention):

  token-mean               w = mask / sum(mask)                  (DAPO)
  seq-mean-token-mean      w = mask / (count_s * n_seqs)         (the Libra / GRPO paper objective)
  seq-mean-token-sum       w = mask / n_seqs
  seq-mean-token-sum-norm  w = mask / (norm_len * n_seqs)        (Dr. GRPO: a constant normaliser)

A "sequence" is a row of the batch, or, with ``segment_ids``, the tokens that share an id: a packed row
holds many sequences and each keeps its own count. ``ratio_level="sequence"``: every token of a sequence
uses the sequence's ratio s = exp(mean over its unmasked tokens of (logp - old)), with GSPO-token's gradient
(d s_t / d logp_t = s, nothing across tokens; equal to GSPO's when advantages are per sequence). That is
GSPO's objective, the mean over sequences of each one's clipped loss, only with ``agg="seq-mean-token-mean"``
(the default): another aggregation weights sequence s's loss by count_s times its factor instead of
1 / n_seqs (token-mean: by its share of the tokens), which is not GSPO's for unequal lengths (a test shows
both). It is the token loss with ``old`` replaced by ``logp - mean(logp - old)`` (both detached), so the fused
kernels run unchanged. The Triton kernel (one program per row) computes the loss partials, the statistics
and, when a gradient is wanted, d loss / d logp in the same pass; the backward is then a multiply.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import triton
import triton.language as tl

from . import _dispatch as D
from .kl_penalty import KL_KINDS, kl_penalty_torch, kl_terms

_TINY = torch.finfo(torch.float32).tiny


class Aggregation(NamedTuple):
    """``factor(count_s, n_seqs, norm_len)``: the per-sequence factor (w = mask * factor of its sequence).
    ``unit``: what the loss is a mean over, "token" or "sequence"; a trainer that splits a batch into
    micro-batches weights each one's loss by how many of these it holds, so their sum is the batch's loss."""

    unit: str
    factor: Callable[[torch.Tensor, int, float], torch.Tensor]


AGGREGATIONS = {
    "token-mean": Aggregation("token", lambda count, n_seqs, norm_len: torch.where(
        count.sum() > 0, 1.0 / count.sum().clamp_min(_TINY), 0.0).expand_as(count)),
    "seq-mean-token-mean": Aggregation("sequence", lambda count, n_seqs, norm_len:
                                       1.0 / (count.clamp_min(_TINY) * n_seqs)),
    "seq-mean-token-sum": Aggregation("sequence", lambda count, n_seqs, norm_len: torch.ones_like(count) / n_seqs),
    "seq-mean-token-sum-norm": Aggregation("sequence", lambda count, n_seqs, norm_len:
                                           torch.ones_like(count) / (norm_len * n_seqs)),
}
AGGS = tuple(AGGREGATIONS)
RATIO_LEVELS = ("token", "sequence")
SUM_NAMES = ("loss", "tokens", "clip_high", "clip_low", "ppo_kl", "kl")  # rows of the partial sums
BLOCK_T = 512


class ClipConfig(NamedTuple):
    eps_low: float
    eps_high: float
    dual_clip: float | None
    kl_coef: float
    kl_kind: str


class GRPOBatch(NamedTuple):
    """Checked, contiguous fp32 inputs of the loss (logp aside); ``adv`` is [B] or [B, T]."""

    old: torch.Tensor
    adv: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor
    ref: torch.Tensor | None
    cfg: ClipConfig
    sequences: tuple[torch.Tensor, int] | None = None  # (index, count) when the ratio is per sequence


def sequence_index(mask: torch.Tensor, segment_ids: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """([B, T] index of each token's sequence in 0..S-1, S): rows, or the distinct ``segment_ids``."""
    b, t = mask.shape
    if segment_ids is None:
        return torch.arange(b, device=mask.device)[:, None].expand(b, t), b
    uniq, inverse = torch.unique(segment_ids, return_inverse=True)
    return inverse.view(b, t), len(uniq)


def _per_sequence_sum(values: torch.Tensor, index: torch.Tensor, count: int) -> torch.Tensor:
    return torch.zeros(count, dtype=torch.float32, device=values.device).index_add_(0, index.reshape(-1),
                                                                                    values.reshape(-1))


def token_weights(mask: torch.Tensor, agg: str, index: torch.Tensor | None = None, sequences: int | None = None,
                  norm_len: float | None = None) -> torch.Tensor:
    """Per-token weights that turn ``sum(w * loss)`` into the requested aggregation; ``index`` /
    ``sequences`` from ``sequence_index`` (default: one sequence per row)."""
    if index is None:
        index, sequences = sequence_index(mask, None)
    count = _per_sequence_sum(mask, index, sequences)
    n_seqs = (count > 0).sum().clamp_min(1).float()
    factor = torch.where(count > 0, AGGREGATIONS[agg].factor(count, n_seqs, norm_len), 0.0)
    return mask * factor[index]


def sequence_level_old(logp: torch.Tensor, old: torch.Tensor, mask: torch.Tensor, index: torch.Tensor,
                       sequences: int) -> torch.Tensor:
    """GSPO as a token loss: ``logp - mean_s(logp - old)`` (detached), so that logp - old' is the
    sequence's mean log-ratio at every token while the gradient still reaches each token's logp."""
    logp = logp.detach().float()
    live = mask != 0
    delta = torch.where(live, logp - old, 0.0)
    count = _per_sequence_sum(mask, index, sequences)
    mean = _per_sequence_sum(delta * mask, index, sequences) / count.clamp_min(_TINY)
    return torch.where(live, logp - mean[index], old).contiguous()


def prepare_grpo(shape, device, old_logp, advantages, mask, ref_logp, *, eps_low, eps_high, dual_clip, kl_coef,
                 kl_kind, agg, segment_ids=None, norm_len=None, ratio_level="token") -> GRPOBatch:
    """Validate the loss inputs against the log-prob shape ``shape`` = (B, T). With
    ``ratio_level="sequence"`` the caller replaces ``old`` once the log-probs exist (``with_logp``)."""
    D.check_choice("agg", agg, AGGS)
    D.check_choice("kl_kind", kl_kind, KL_KINDS)
    D.check_choice("ratio_level", ratio_level, RATIO_LEVELS)
    if agg == "seq-mean-token-sum-norm" and not (norm_len is not None and norm_len > 0):
        raise ValueError(f"agg='seq-mean-token-sum-norm' (Dr. GRPO) needs norm_len > 0 (e.g. the generation "
                         f"limit), got {norm_len}")
    if segment_ids is not None:
        if not isinstance(segment_ids, torch.Tensor) or segment_ids.is_floating_point() or segment_ids.is_complex() \
                or segment_ids.dtype == torch.bool:
            raise ValueError(f"segment_ids must be an integer tensor, got {getattr(segment_ids, 'dtype', segment_ids)}")
        D.check_shape("segment_ids", segment_ids, shape, f"logp of shape {tuple(shape)}")
    if len(shape) != 2:
        raise ValueError(f"logp must be [B, T], got shape {tuple(shape)}")
    ref_desc = f"logp of shape {tuple(shape)}"
    D.check_float("old_logp", old_logp)
    D.check_shape("old_logp", old_logp, shape, ref_desc)
    D.check_float("advantages", advantages)
    if tuple(advantages.shape) not in (tuple(shape), tuple(shape[:1])):
        raise ValueError(f"advantages has shape {tuple(advantages.shape)} but {ref_desc} requires "
                         f"{tuple(shape[:1])} or {tuple(shape)}")
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    D.check_shape("mask", mask, shape, ref_desc)
    if ref_logp is not None:
        D.check_float("ref_logp", ref_logp)
        D.check_shape("ref_logp", ref_logp, shape, ref_desc)
    elif kl_coef != 0:
        raise ValueError(f"ref_logp is required when kl_coef != 0 (kl_coef={kl_coef})")
    if dual_clip is not None and not dual_clip > 1:
        raise ValueError(f"dual_clip must be > 1 or None, got {dual_clip}")
    if not (0 <= eps_low < 1 and eps_high >= 0):
        raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got eps_low={eps_low}, eps_high={eps_high}")
    tensors = dict(old_logp=old_logp, advantages=advantages, mask=mask, ref_logp=ref_logp, segment_ids=segment_ids)
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError(f"{name} is on {t.device} but logp is on {device}")
    mask_f = mask.detach().to(torch.float32).contiguous()
    index, sequences = sequence_index(mask_f, segment_ids)
    return GRPOBatch(
        old=old_logp.detach().float().contiguous(), adv=advantages.detach().float().contiguous(), mask=mask_f,
        weights=token_weights(mask_f, agg, index, sequences, norm_len),
        ref=None if ref_logp is None else ref_logp.contiguous(),
        cfg=ClipConfig(float(eps_low), float(eps_high), None if dual_clip is None else float(dual_clip),
                       float(kl_coef), kl_kind),
        sequences=(index, sequences) if ratio_level == "sequence" else None)


def with_logp(batch: GRPOBatch, logp: torch.Tensor) -> GRPOBatch:
    """The batch the token loss needs once ``logp`` is known: for sequence-level ratios (GSPO), ``old``
    becomes ``sequence_level_old``; otherwise the batch unchanged."""
    if batch.sequences is None:
        return batch
    return batch._replace(old=sequence_level_old(logp, batch.old, batch.mask, *batch.sequences))


def sums_to_stats(sums: torch.Tensor, has_ref: bool) -> dict:
    """The statistics from the six partial sums: shares of unmasked tokens, 0 when nothing is unmasked."""
    tokens = sums[1]
    denom = torch.where(tokens > 0, tokens, torch.ones_like(tokens))
    stats = {name: (sums[i] / denom).detach() for i, name in enumerate(SUM_NAMES) if i >= 2}
    stats["clipfrac_high"], stats["clipfrac_low"] = stats.pop("clip_high"), stats.pop("clip_low")
    if not has_ref:
        del stats["kl"]
    return stats


# ----------------------------------------------------------------------------- PyTorch backend


def torch_token_terms(logp, old, adv, ref, cfg: ClipConfig):
    """Differentiable per-token (loss, ratio, kl | None) on fp32 tensors of one shape."""
    ratio = torch.exp(torch.clamp(logp - old, -20.0, 20.0))
    pg = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1.0 - cfg.eps_low, 1.0 + cfg.eps_high))
    if cfg.dual_clip is not None:
        pg = torch.where(adv < 0, torch.minimum(pg, -adv * cfg.dual_clip), pg)
    kl = None if ref is None else kl_penalty_torch(logp, ref, cfg.kl_kind)
    loss = pg if kl is None or cfg.kl_coef == 0 else pg + cfg.kl_coef * kl
    return loss, ratio, kl


def torch_sums(logp, old, adv, mask, weights, ref, cfg: ClipConfig) -> torch.Tensor:
    """The six partial sums (row 0 differentiable) for tokens of any matching shapes."""
    loss, ratio, kl = torch_token_terms(logp, old, adv, ref, cfg)
    live = mask != 0
    zero = torch.zeros((), dtype=torch.float32, device=logp.device)
    with torch.no_grad():
        hi = ((adv > 0) & (ratio > 1.0 + cfg.eps_high)).float()
        lo = ((adv < 0) & (ratio < 1.0 - cfg.eps_low)).float()
        rest = [mask.sum(), (mask * hi).sum(), (mask * lo).sum(),
                torch.where(live, mask * (old - logp), zero).sum(),
                zero if kl is None else torch.where(live, mask * kl, zero).sum()]
    return torch.stack([torch.where(live, weights * loss, zero).sum(), *rest])


# ----------------------------------------------------------------------------- Triton backend


@triton.jit
def grpo_token(logp, old, adv, ref, eps_low, eps_high, dual_clip, kl_coef,
               HAS_REF: tl.constexpr, HAS_DUAL: tl.constexpr, KL_KIND: tl.constexpr):
    """(loss, d pg / d logp, kl, d kl / d logp, clipped high, clipped low) per token, fp32."""
    delta = logp - old
    ratio = tl.exp(tl.minimum(tl.maximum(delta, -20.0), 20.0))
    pg1 = -adv * ratio
    pg2 = -adv * tl.minimum(tl.maximum(ratio, 1.0 - eps_low), 1.0 + eps_high)
    unclipped = pg1 >= pg2  # on a tie the clip is the identity, so the gradient is the unclipped one
    pg = tl.where(unclipped, pg1, pg2)
    dpg_dratio = tl.where(unclipped, -adv, 0.0)
    if HAS_DUAL:
        pg3 = -adv * dual_clip
        capped = (adv < 0) & (pg3 < pg)
        pg = tl.where(capped, pg3, pg)
        dpg_dratio = tl.where(capped, 0.0, dpg_dratio)
    dpg = tl.where((delta >= -20.0) & (delta <= 20.0), dpg_dratio * ratio, 0.0)
    if HAS_REF:
        kl, dkl = kl_terms(logp, ref, KL_KIND)
        loss = pg + kl_coef * kl
    else:
        kl = tl.zeros_like(pg)
        dkl = tl.zeros_like(pg)
        loss = pg
    return loss, dpg, kl, dkl, (adv > 0) & (ratio > 1.0 + eps_high), (adv < 0) & (ratio < 1.0 - eps_low)


@triton.jit
def _grpo_kernel(
    logp_ptr, old_ptr, adv_ptr, mask_ptr, w_ptr, ref_ptr, part_ptr, dpg_ptr, dkl_ptr, B, T,
    eps_low, eps_high, dual_clip, kl_coef,
    ADV_PER_TOKEN: tl.constexpr, HAS_REF: tl.constexpr, HAS_DUAL: tl.constexpr, KL_KIND: tl.constexpr,
    WRITE_GRAD: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = row * T
    acc_loss = tl.zeros([BLOCK], tl.float32)
    acc_tok = tl.zeros([BLOCK], tl.float32)
    acc_hi = tl.zeros([BLOCK], tl.float32)
    acc_lo = tl.zeros([BLOCK], tl.float32)
    acc_ppo = tl.zeros([BLOCK], tl.float32)
    acc_kl = tl.zeros([BLOCK], tl.float32)
    for t0 in range(0, T, BLOCK):
        offs = base + t0 + tl.arange(0, BLOCK)
        ok = t0 + tl.arange(0, BLOCK) < T
        logp = tl.load(logp_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        old = tl.load(old_ptr + offs, mask=ok, other=0.0)
        mask = tl.load(mask_ptr + offs, mask=ok, other=0.0)
        w = tl.load(w_ptr + offs, mask=ok, other=0.0)
        if ADV_PER_TOKEN:
            adv = tl.load(adv_ptr + offs, mask=ok, other=0.0)
        else:
            adv = tl.zeros([BLOCK], tl.float32) + tl.load(adv_ptr + row)  # a tensor, as the masks need
        ref = tl.load(ref_ptr + offs, mask=ok, other=0.0).to(tl.float32) if HAS_REF else logp
        loss, dpg, kl, dkl, hi, lo = grpo_token(logp, old, adv, ref, eps_low, eps_high, dual_clip, kl_coef,
                                                HAS_REF, HAS_DUAL, KL_KIND)
        live = mask != 0
        acc_loss += tl.where(live, w * loss, 0.0)
        acc_tok += mask
        acc_hi += tl.where(hi, mask, 0.0)
        acc_lo += tl.where(lo, mask, 0.0)
        acc_ppo += tl.where(live, mask * (old - logp), 0.0)
        acc_kl += tl.where(live, mask * kl, 0.0)
        if WRITE_GRAD:
            tl.store(dpg_ptr + offs, tl.where(live, w * dpg, 0.0), mask=ok)
            if HAS_REF:
                tl.store(dkl_ptr + offs, tl.where(live, w * kl_coef * dkl, 0.0), mask=ok)
    tl.store(part_ptr + row, tl.sum(acc_loss, axis=0))
    tl.store(part_ptr + B + row, tl.sum(acc_tok, axis=0))
    tl.store(part_ptr + 2 * B + row, tl.sum(acc_hi, axis=0))
    tl.store(part_ptr + 3 * B + row, tl.sum(acc_lo, axis=0))
    tl.store(part_ptr + 4 * B + row, tl.sum(acc_ppo, axis=0))
    tl.store(part_ptr + 5 * B + row, tl.sum(acc_kl, axis=0))


def triton_sums(logp: torch.Tensor, batch: GRPOBatch, want_grad: bool):
    """(sums[6], d pg / d logp weighted [B, T] | None, d kl-term / d logp weighted | None) from one kernel."""
    b, t = logp.shape
    parts = torch.empty((6, b), dtype=torch.float32, device=logp.device)
    dpg = torch.empty((b, t), dtype=torch.float32, device=logp.device) if want_grad else parts
    has_ref = batch.ref is not None
    dkl = torch.empty_like(dpg) if want_grad and has_ref else dpg
    cfg = batch.cfg
    if b and t:
        _grpo_kernel[(b,)](
            logp, batch.old, batch.adv, batch.mask, batch.weights, batch.ref if has_ref else logp, parts, dpg, dkl,
            b, t, cfg.eps_low, cfg.eps_high, cfg.dual_clip or 0.0, cfg.kl_coef,
            ADV_PER_TOKEN=batch.adv.dim() == 2, HAS_REF=has_ref, HAS_DUAL=cfg.dual_clip is not None,
            KL_KIND=KL_KINDS.index(cfg.kl_kind), WRITE_GRAD=want_grad, BLOCK=min(BLOCK_T, triton.next_power_of_2(t)))
    else:
        parts.zero_()
    if not want_grad:
        return parts.sum(1), None, None
    return parts.sum(1), dpg, (dkl if has_ref else None)


class _TritonGRPO(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logp, ref, batch: GRPOBatch):
        want = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        sums, dpg, dkl = triton_sums(logp, batch, want)
        ctx.save_for_backward(dpg, dkl)
        ctx.dtypes = (logp.dtype, None if ref is None else ref.dtype)
        ctx.mark_non_differentiable(sums)
        return sums[0].clone(), sums

    @staticmethod
    def backward(ctx, g, _):
        dpg, dkl = ctx.saved_tensors
        dlogp = dpg * g if dkl is None else (dpg + dkl) * g
        dref = None if dkl is None or ctx.dtypes[1] is None else (-dkl * g).to(ctx.dtypes[1])
        return dlogp.to(ctx.dtypes[0]), dref, None


# ----------------------------------------------------------------------------- public API


def grpo_loss(logp, old_logp, advantages, mask, *, ref_logp=None, eps_low=0.2, eps_high=0.28, dual_clip=None,
              kl_coef=0.0, kl_kind="k3", agg="seq-mean-token-mean", segment_ids=None, norm_len=None,
              ratio_level="token", backend=None):
    """Clipped GRPO loss of per-token log-probs ``logp`` [B, T]; returns ``(loss, stats)``.

    old_logp [B, T], advantages [B] or [B, T] and mask [B, T] (bool or float) are constants; ref_logp
    [B, T] is needed when kl_coef != 0 (the "kl" stat is reported whenever it is given). The loss is a
    0-d fp32 tensor differentiable w.r.t. logp (and ref_logp); stats are detached 0-d fp32 tensors:
    clipfrac_high, clipfrac_low, ppo_kl (masked mean of old - logp; per sequence with GSPO) and kl.

    ``agg`` is one of ``AGGS`` (``norm_len`` is Dr. GRPO's constant); ``segment_ids`` [B, T] (integers)
    makes the tokens sharing an id one sequence (packed rows); ``ratio_level="sequence"`` is GSPO.
    """
    D.check_float("logp", logp)
    batch = prepare_grpo(tuple(logp.shape), logp.device, old_logp, advantages, mask, ref_logp, eps_low=eps_low,
                         eps_high=eps_high, dual_clip=dual_clip, kl_coef=kl_coef, kl_kind=kl_kind, agg=agg,
                         segment_ids=segment_ids, norm_len=norm_len, ratio_level=ratio_level)
    batch = with_logp(batch, logp)
    if D.resolve_backend(backend, logp.device) == "torch":
        ref = None if batch.ref is None else batch.ref.float()
        sums = torch_sums(logp.float(), batch.old, batch.adv if batch.adv.dim() == 2 else batch.adv[:, None],
                          batch.mask, batch.weights, ref, batch.cfg)
        loss = sums[0]
    else:
        loss, sums = _TritonGRPO.apply(logp.contiguous(), batch.ref, batch)
    stats = sums_to_stats(sums.detach(), batch.ref is not None)
    return loss, stats
