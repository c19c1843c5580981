"""Plumbing shared by the kernel tests: where tensors live, which backends run, how close is close."""
import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.triton)]
DTYPES = [torch.float32, torch.bfloat16]


def twin(values, dtype=torch.float32):
    """Round values to dtype once; return the kernel input and a float64 reference leaf of the same numbers."""
    kernel_input = values.to(DEVICE, dtype).requires_grad_()
    return kernel_input, kernel_input.detach().double().requires_grad_()


def backprop(outputs, weights):
    """Backpropagate a random linear functional of the outputs, so every element's gradient matters."""
    sum((out * w.to(out.dtype)).sum() for out, w in zip(outputs, weights)).backward()


def assert_output(actual, expected, input_dtype=torch.float32):
    """Loss-feeding results are fp32 whatever the input dtype, and match the float64 reference."""
    assert actual.dtype == torch.float32, actual.dtype
    tol = 1e-5 if input_dtype in (torch.float32, torch.float64) else 1e-4
    torch.testing.assert_close(actual.double(), expected.detach(), rtol=tol, atol=tol)


def assert_grad(actual, expected):
    """Gradients come back in the input dtype; atol scales with the gradient's size (bf16 keeps ~3 digits),
    floored at a few roundings of O(1) fp32 intermediates such as exp(x) - 1 (~1e-7 each)."""
    assert actual is not None, "no gradient reached the input"
    tol = 2e-2 if actual.dtype == torch.bfloat16 else 1e-5
    atol = tol * max(expected.abs().max().item(), 0.1)
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=atol)


def assert_stats(stats, expected):
    """Stats may be python floats or 0-d tensors: compare values only."""
    for key, value in expected.items():
        assert key in stats, f"missing stat {key!r}"
        assert float(stats[key]) == pytest.approx(float(value), rel=1e-5, abs=1e-5), key
