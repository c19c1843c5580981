"""Rollout correction: the engine that sampled a rollout and the trainer that learns from it disagree a
little on each token's probability (another kernel, bf16, a stale sync), so the samples are slightly
off-policy. These small pure functions turn the two log-probs of every response token into per-token
advantage weights and a keep-mask, in one registry (``CORRECTIONS``):

  none        weights 1, keep everything
  tis-token   truncated importance sampling per token: w_t = min(pi_old / pi_engine, high)
  tis-seq     per sequence: w = min(prod_t pi_old / pi_engine, high), the same w on each of its tokens
  mask-token  drop tokens whose ratio lies outside [low, high] (masked IS)
  mask-seq    drop whole sequences whose product ratio lies outside [low, high]

pi_old is the trainer's probability before the update (its "old" log-prob) and pi_engine the engine's
sampling log-prob, at the same temperature. A weight multiplies the token's advantage: for w > 0,
max(-wA r, -wA clip(r)) = w max(-A r, -A clip(r)), so the clipped loss, its clip fractions and the kernels
stay as they are, and the KL term is not reweighted (as in verl and TRL, the IS weight corrects the policy
gradient only). A dropped token leaves the loss and every denominator (it is masked like padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

Mode = Literal["none", "tis-token", "tis-seq", "mask-token", "mask-seq"]


@dataclass
class Correction:
    """Per response token (flat, [N]): advantage weights, keep-mask (1/0), and the token counts."""

    weights: torch.Tensor
    keep: torch.Tensor
    capped: int  # tokens whose IS weight was truncated at ``high``
    dropped: int  # tokens removed by a mask mode


def _sequence_log_ratio(log_ratio: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Each token's sequence's summed log-ratio (log of the product of its tokens' ratios)."""
    sums = torch.zeros(int(segments.max()) + 1 if segments.numel() else 0, dtype=torch.float64,
                       device=log_ratio.device).index_add_(0, segments, log_ratio.double())
    return sums[segments]


def _none(log_ratio, segments, low, high) -> Correction:
    ones = torch.ones_like(log_ratio)
    return Correction(ones, ones.clone(), 0, 0)


def _tis(per_token: bool):
    def correct(log_ratio, segments, low, high) -> Correction:
        lr = log_ratio if per_token else _sequence_log_ratio(log_ratio, segments)
        ratio = torch.exp(lr.clamp(max=80.0)).float()  # exp(80) is finite in fp32; capped below anyway
        capped = ratio > high
        return Correction(torch.where(capped, torch.full_like(ratio, high), ratio), torch.ones_like(ratio),
                          int(capped.sum()), 0)
    return correct


def _mask(per_token: bool):
    def correct(log_ratio, segments, low, high) -> Correction:
        lr = log_ratio if per_token else _sequence_log_ratio(log_ratio, segments)
        keep = ((lr >= torch.log(torch.tensor(low, dtype=lr.dtype)))
                & (lr <= torch.log(torch.tensor(high, dtype=lr.dtype)))).float()
        return Correction(torch.ones_like(log_ratio), keep, 0, int((keep == 0).sum()))
    return correct


CORRECTIONS: dict[str, Callable[..., Correction]] = {
    "none": _none, "tis-token": _tis(True), "tis-seq": _tis(False), "mask-token": _mask(True),
    "mask-seq": _mask(False),
}


def check_thresholds(mode: str, low: float, high: float) -> None:
    if mode not in CORRECTIONS:
        raise ValueError(f"rollout_correction must be one of {tuple(CORRECTIONS)}, got {mode!r}")
    if not 0 < high or (mode.startswith("mask") and not 0 <= low < 1 < high):
        raise ValueError(f"rollout correction {mode!r} needs 0 <= low < 1 < high (tis: high > 0); "
                         f"got low={low}, high={high}")


def correct(mode: str, old_logp: torch.Tensor, engine_logp: torch.Tensor, segments: torch.Tensor, *,
            low: float, high: float) -> Correction:
    """The correction of one batch of response tokens: ``old_logp`` (trainer) and ``engine_logp``
    (sampler), flat [N] fp32, and ``segments`` [N] (which rollout each token belongs to, 0..S-1)."""
    check_thresholds(mode, low, high)
    log_ratio = (old_logp.float() - engine_logp.float()).detach()
    return CORRECTIONS[mode](log_ratio, segments, low, high)
