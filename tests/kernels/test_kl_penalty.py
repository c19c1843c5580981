"""kl_penalty against the float64 reference for every kind, including the k3 clamps."""
import pytest
import reference as ref
import torch
from helpers import BACKENDS, DEVICE, DTYPES, assert_grad, assert_output, backprop, twin

import libra_kernels as lk

KINDS = ["k1", "k2", "k3", "abs"]


def logp_pair(shape):
    """Differences of three magnitudes: near zero, moderate, and deep in k3's clamped region."""
    logp = -10 * torch.rand(shape)
    spread = torch.tensor([0.3, 3.0, 30.0])[torch.arange(logp.numel()) % 3].reshape(shape)
    return logp, logp + spread * torch.randn(shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(37,), (4, 13), (2, 3, 5)])
def test_kl_penalty(backend, kind, dtype, shape):
    logp_values, ref_values = logp_pair(shape)
    logp, logp_ref = twin(logp_values, dtype)
    ref_logp, ref_logp_ref = twin(ref_values, dtype)
    out = lk.kl_penalty(logp, ref_logp, kind=kind, backend=backend)
    expected = ref.kl_penalty(logp_ref, ref_logp_ref, kind)
    assert out.shape == shape
    assert_output(out, expected, dtype)
    weights = torch.randn(1, *shape, dtype=torch.float64, device=DEVICE)
    backprop((out,), weights)
    backprop((expected,), weights)
    assert_grad(logp.grad, logp_ref.grad)
    assert_grad(ref_logp.grad, ref_logp_ref.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kl_penalty_default_kind_is_k3(backend):
    logp, ref_logp = (t.to(DEVICE) for t in logp_pair((20,)))
    assert_output(lk.kl_penalty(logp, ref_logp, backend=backend), ref.kl_penalty(logp, ref_logp, "k3"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_k3_clamps_extremes(backend):
    """Far-apart log-probs saturate at 10 instead of overflowing exp(ref - logp)."""
    logp = torch.tensor([0.0, -1e4, -50.0, -1.0], device=DEVICE)
    ref_logp = torch.tensor([-1e4, 0.0, -1.0, -50.0], device=DEVICE)
    out = lk.kl_penalty(logp, ref_logp, kind="k3", backend=backend)
    assert_output(out, torch.full((4,), 10.0, dtype=torch.float64, device=DEVICE))
