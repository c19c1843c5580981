"""Rollout correction by hand: masked IS keeps the true ratio on the tokens it keeps (TRL's token_mask /
sequence_mask, verl's mask mode), rejection keeps weight 1, the geometric sequence level does not drift
with length, every mode equals a plain per-token computation, and the config accepts every mode of the
registry."""
import math
import random

import pytest
import torch

from libra.config import load_config
from libra.train.grpo import GRPOConfig
from libra.train.rollout_correction import CORRECTIONS, MODES, correct

LOG_RATIOS = [0.1, -0.2, 1.0, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
SEGMENTS = [0, 0, 0] + [1] * 13  # a short sequence with one outlier token, a long one drifting slowly


def _correct(mode, low=0.5, high=2.0):
    log_ratio = torch.tensor(LOG_RATIOS)
    return correct(mode, log_ratio, torch.zeros_like(log_ratio), torch.tensor(SEGMENTS), low=low, high=high)


def test_mask_token_keeps_the_true_ratio_on_kept_tokens():
    c = _correct("mask-token")
    expected_keep = [float(math.exp(x) <= 2.0 and math.exp(x) >= 0.5) for x in LOG_RATIOS]
    assert c.keep.tolist() == expected_keep and c.dropped == 1 and c.capped == 0
    expected = [math.exp(x) if k else 0.0 for x, k in zip(LOG_RATIOS, expected_keep)]
    assert c.weights.tolist() == pytest.approx(expected, rel=1e-6)


def test_mask_seq_weights_each_kept_sequence_by_its_product_ratio():
    c = _correct("mask-seq", low=0.2, high=5.0)  # products: e^0.9 = 2.46 (kept), e^0.65 = 1.92 (kept)
    assert c.keep.tolist() == [1.0] * 16 and c.dropped == 0
    assert c.weights.tolist() == pytest.approx([math.exp(0.9)] * 3 + [math.exp(0.65)] * 13, rel=1e-6)
    c = _correct("mask-seq", low=0.5, high=2.0)
    assert c.keep.tolist() == [0.0] * 3 + [1.0] * 13 and c.dropped == 3
    assert c.weights.tolist() == pytest.approx([0.0] * 3 + [math.exp(0.65)] * 13, rel=1e-6)


def test_mask_seq_geo_keeps_a_long_sequence_whose_product_drifts_out():
    """Per-token log-ratio 0.05 over 13 tokens: the product e^0.65 leaves [0.6, 1.5] (mask-seq drops the whole
    sequence), the geometric mean e^0.05 stays inside and is the weight of each of its tokens."""
    assert _correct("mask-seq", low=0.6, high=1.5).keep[3:].sum() == 0
    c = _correct("mask-seq-geo", low=0.6, high=1.5)
    assert c.keep.tolist() == [1.0] * 16 and c.dropped == 0
    assert c.weights.tolist() == pytest.approx([math.exp(0.3)] * 3 + [math.exp(0.05)] * 13, rel=1e-6)


@pytest.mark.parametrize("mode, bounds, keep", [
    ("reject-token", (0.5, 2.0), [float(x != 1.0) for x in LOG_RATIOS]),
    ("reject-seq", (0.5, 2.0), [0.0] * 3 + [1.0] * 13),
    ("reject-seq-geo", (0.6, 1.3), [0.0] * 3 + [1.0] * 13),  # geometric means e^0.3 = 1.35 and e^0.05
])
def test_reject_modes_drop_outliers_and_leave_the_rest_at_weight_one(mode, bounds, keep):
    c = _correct(mode, *bounds)
    assert c.keep.tolist() == keep and c.weights.tolist() == keep and c.capped == 0  # weight 1 kept, 0 dropped
    assert c.dropped == keep.count(0.0)


def _reference(mode: str, log_ratios: list[float], segments: list[int], low: float, high: float):
    """(weights, keep, capped, dropped) token by token in plain Python, from the module docstring's table."""
    rule, _, level = mode.partition("-")
    members = {s: [x for x, t in zip(log_ratios, segments) if t == s] for s in set(segments)}
    levels = {"token": lambda i: log_ratios[i], "seq": lambda i: sum(members[segments[i]]),
              "seq-geo": lambda i: sum(members[segments[i]]) / len(members[segments[i]])}
    weights, keep, capped = [], [], 0
    for i in range(len(log_ratios)):
        r = math.exp(levels[level](i)) if level else 1.0
        inside = low <= r <= high
        if rule == "tis":
            weights.append(min(r, high))
            capped += r > high
        else:
            weights.append(1.0 if rule == "none" else (r if rule == "mask" else 1.0) if inside else 0.0)
        keep.append(1.0 if rule in ("none", "tis") or inside else 0.0)
    return weights, keep, capped, keep.count(0.0)


@pytest.mark.parametrize("bounds", [(0.5, 2.0), (0.8, 1.25)])
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_equals_a_plain_per_token_computation(mode, bounds):
    """12 sequences of 1-20 tokens in shuffled order (a packed batch's segments), each with its own drift
    (near 0 for half of them), so every rule keeps some tokens and drops or caps others at every level."""
    rng = random.Random(0)
    drift = [rng.uniform(-0.05, 0.05) if s % 2 else rng.uniform(-1.0, 1.0) for s in range(12)]
    segments = [s for s in range(12) for _ in range(rng.randint(1, 20))]
    rng.shuffle(segments)
    log_ratios = [drift[s] + rng.gauss(0.0, 0.3) for s in segments]
    engine = torch.tensor([rng.uniform(-3.0, -0.1) for _ in segments])
    old = engine + torch.tensor(log_ratios)
    c = correct(mode, old, engine, torch.tensor(segments), low=bounds[0], high=bounds[1])
    weights, keep, capped, dropped = _reference(mode, (old - engine).tolist(), segments, *bounds)
    assert c.keep.tolist() == keep and (c.capped, c.dropped) == (capped, dropped)
    assert c.weights.tolist() == pytest.approx(weights, rel=1e-5)
    if mode != "none":
        assert 0 < (capped if mode.startswith("tis") else dropped) < len(segments), "the rule must bite, not all"


def test_masked_is_is_not_rejection():
    """The review finding: mask-* used to keep weight 1 (rejection). With every ratio inside the bounds
    nothing is dropped, and masked IS still weights each token by its ratio while rejection does not."""
    c = _correct("mask-token", low=0.1, high=10.0)
    assert c.dropped == 0 and c.weights.tolist() == pytest.approx([math.exp(x) for x in LOG_RATIOS], rel=1e-6)
    assert _correct("reject-token", low=0.1, high=10.0).weights.tolist() == [1.0] * 16


def test_the_config_offers_exactly_the_registry():
    for mode in CORRECTIONS:
        cfg = load_config(GRPOConfig, None, [f"loss.rollout_correction={mode}"])
        assert cfg.loss.rollout_correction == mode
    with pytest.raises(ValueError, match="reject-seq"):
        load_config(GRPOConfig, None, ["loss.rollout_correction=mask"])
