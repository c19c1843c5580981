"""Rollout correction: the engine that sampled a rollout and the trainer that learns from it disagree a
little on each token's probability (another kernel, bf16, a stale sync), so the samples are slightly
off-policy. These small pure functions turn the two log-probs of every response token into per-token
advantage weights and a keep-mask, in one registry (``CORRECTIONS``; ``MODES`` its names, which the config's
Literal is built from). Each mode is a rule at a level: the ratio r = pi_old / pi_engine of the token
(``-token``), the product of its sequence's token ratios (``-seq``), or their geometric mean, exp of the
sequence's mean per-token log-ratio (``-seq-geo``):

  none                        weights 1, keep everything
  tis-token, tis-seq          truncated importance sampling: w = min(r, high)
  mask-token, mask-seq,       masked importance sampling (TRL's token_mask / sequence_mask, verl's mask
  mask-seq-geo                mode): drop the tokens whose r lies outside [low, high]; the kept ones get
                              their true ratio, w = r
  reject-token, reject-seq,   rejection: drop the same tokens; the kept ones get w = 1, so the mismatch
  reject-seq-geo              inside [low, high] is left uncorrected

The product over a sequence drifts with its length: under engine sampling each token's expected log-ratio
is -KL(pi_engine || pi_old) < 0, so the sum falls with every token and ``-seq`` bounds such as [0.5, 2]
drop long responses whole. ``-seq-geo`` measures a sequence's per-token mismatch, so per-token bounds
mean the same at any length.

pi_old is the trainer's probability before the update (its "old" log-prob) and pi_engine the engine's
sampling log-prob, at the same temperature. A weight multiplies the token's advantage: for w > 0,
max(-wA r, -wA clip(r)) = w max(-A r, -A clip(r)), so the clipped loss, its clip fractions and the kernels
stay as they are, and the KL term is not reweighted (as in verl and TRL, the IS weight corrects the policy
gradient only). A dropped token leaves the loss and every denominator (it is masked like padding, as verl's
rejection does), and its weight is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch


@dataclass
class Correction:
    """Per response token (flat, [N]): advantage weights, keep-mask (1/0), and the token counts."""

    weights: torch.Tensor
    keep: torch.Tensor
    capped: int  # tokens whose IS weight was truncated at ``high``
    dropped: int  # tokens removed by a mask or reject mode


Level = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _token(log_ratio: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    return log_ratio


def _per_sequence(values: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Per sequence (0..S-1), the float64 sum of ``values`` over its tokens."""
    count = int(segments.max()) + 1 if segments.numel() else 0
    return torch.zeros(count, dtype=torch.float64, device=values.device).index_add_(0, segments, values.double())


def _sequence(log_ratio: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Each token's sequence's summed log-ratio (log of the product of its tokens' ratios)."""
    return _per_sequence(log_ratio, segments)[segments]


def _sequence_geo(log_ratio: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Each token's sequence's mean log-ratio (log of the geometric mean of its tokens' ratios)."""
    return (_per_sequence(log_ratio, segments) / _per_sequence(torch.ones_like(log_ratio), segments))[segments]


def _ratio(log_ratio: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_ratio.clamp(max=80.0)).float()  # exp(80) is finite in fp32; capped or dropped anyway


def _none(log_ratio, segments, low, high) -> Correction:
    ones = torch.ones_like(log_ratio)
    return Correction(ones, ones.clone(), 0, 0)


def _tis(level: Level):
    def correct(log_ratio, segments, low, high) -> Correction:
        ratio = _ratio(level(log_ratio, segments))
        capped = ratio > high
        return Correction(torch.where(capped, torch.full_like(ratio, high), ratio), torch.ones_like(ratio),
                          int(capped.sum()), 0)
    return correct


def _bounded(level: Level, *, reweight: bool):
    """Drop the tokens whose ratio at ``level`` lies outside [low, high]; the kept ones get that ratio
    (``reweight``: masked IS) or 1 (rejection). The bounds are compared in log space (no exp rounding)."""
    def correct(log_ratio, segments, low, high) -> Correction:
        lr = level(log_ratio, segments)
        log_low, log_high = torch.log(torch.tensor([low, high], dtype=lr.dtype))
        keep = (lr >= log_low) & (lr <= log_high)
        weights = torch.where(keep, _ratio(lr), 0.0) if reweight else keep.to(log_ratio.dtype)
        return Correction(weights, keep.float(), 0, int((~keep).sum()))
    return correct


CORRECTIONS: dict[str, Callable[..., Correction]] = {
    "none": _none, "tis-token": _tis(_token), "tis-seq": _tis(_sequence),
    **{f"{name}-{level}": _bounded(fn, reweight=reweight)
       for name, reweight in (("mask", True), ("reject", False))
       for level, fn in (("token", _token), ("seq", _sequence), ("seq-geo", _sequence_geo))},
}
MODES = tuple(CORRECTIONS)
Mode = Literal[MODES]


def check_thresholds(mode: str, low: float, high: float) -> None:
    if mode not in CORRECTIONS:
        raise ValueError(f"rollout_correction must be one of {MODES}, got {mode!r}")
    if not 0 < high or (mode.startswith(("mask", "reject")) and not 0 <= low < 1 < high):
        raise ValueError(f"rollout correction {mode!r} needs 0 <= low < 1 < high (tis: high > 0); "
                         f"got low={low}, high={high}")


def correct(mode: str, old_logp: torch.Tensor, engine_logp: torch.Tensor, segments: torch.Tensor, *,
            low: float, high: float) -> Correction:
    """The correction of one batch of response tokens: ``old_logp`` (trainer) and ``engine_logp``
    (sampler), flat [N] fp32, and ``segments`` [N] (which rollout each token belongs to, 0..S-1)."""
    check_thresholds(mode, low, high)
    log_ratio = (old_logp.float() - engine_logp.float()).detach()
    return CORRECTIONS[mode](log_ratio, segments, low, high)
