"""Hypothesis property tests on the PyTorch backend: random small inputs against the reference.

Differences stay away from exact clamp boundaries and from logp == ref_logp, where the
subgradient is a convention rather than a property.
"""
import math

import reference as ref
import torch
from helpers import DEVICE, assert_grad, assert_output, assert_stats, backprop, twin
from hypothesis import given, settings
from hypothesis import strategies as st

import libra_kernels as lk

SETTINGS = settings(max_examples=25, deadline=None)


def floats(low, high):
    return st.floats(low, high)


def nonzero(magnitude):
    return st.one_of(floats(-magnitude, -1e-3), floats(1e-3, magnitude))


def tensor(draw, shape, elements):
    values = draw(st.lists(elements, min_size=math.prod(shape), max_size=math.prod(shape)))
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


@SETTINGS
@given(st.data())
def test_kl_penalty_property(data):
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    kind = data.draw(st.sampled_from(["k1", "k2", "k3", "abs"]))
    logp_values = tensor(data.draw, shape, floats(-30, 0))
    ref_values = logp_values + tensor(data.draw, shape, nonzero(25))
    logp, logp_ref = twin(logp_values)
    ref_logp, ref_logp_ref = twin(ref_values)
    out = lk.kl_penalty(logp, ref_logp, kind=kind, backend="torch")
    expected = ref.kl_penalty(logp_ref, ref_logp_ref, kind)
    assert_output(out, expected)
    weights = torch.randn(1, *shape, dtype=torch.float64, device=DEVICE)
    backprop((out,), weights)
    backprop((expected,), weights)
    assert_grad(logp.grad, logp_ref.grad)
    assert_grad(ref_logp.grad, ref_logp_ref.grad)


@SETTINGS
@given(st.data())
def test_grpo_loss_property(data):
    batch, length = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 8))
    shape = (batch, length)
    logp_values = tensor(data.draw, shape, floats(-10, 0))
    adv_shape = data.draw(st.sampled_from([(batch,), shape]))
    inputs = dict(
        old_logp=(logp_values - tensor(data.draw, shape, floats(-15, 15))).to(DEVICE),
        advantages=tensor(data.draw, adv_shape, floats(-3, 3)).to(DEVICE),
        mask=torch.tensor(data.draw(st.lists(st.booleans(), min_size=batch * length,
                                             max_size=batch * length)), device=DEVICE).reshape(shape),
    )
    options = dict(
        ref_logp=(logp_values + tensor(data.draw, shape, nonzero(25))).to(DEVICE),
        eps_low=data.draw(floats(0.05, 0.5)),
        eps_high=data.draw(floats(0.05, 0.5)),
        dual_clip=data.draw(st.sampled_from([None, 1.5, 3.0])),
        kl_coef=data.draw(st.sampled_from([0.0, 1e-3, 0.5])),
        kl_kind=data.draw(st.sampled_from(["k1", "k2", "k3", "abs"])),
        agg=data.draw(st.sampled_from(["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])),
    )
    logp, logp_ref = twin(logp_values)
    loss, stats = lk.grpo_loss(logp, **inputs, **options, backend="torch")
    loss_ref, stats_ref = ref.grpo_loss(logp_ref, **inputs, **options)
    assert_output(loss, loss_ref)
    assert_stats(stats, stats_ref)
    loss.backward()
    loss_ref.backward()
    assert_grad(logp.grad, logp_ref.grad)
