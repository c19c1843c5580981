"""Paths the other kernel tests leave open: the PyTorch backend's multi-chunk path (a small
``LIBRA_KERNELS_CHUNK_MB``) in fp32 and bf16, Triton ``group_advantages`` (under the interpreter on CPU),
and which backend "auto" actually ran."""
import sys

import pytest
import reference as ref
import torch
from helpers import BACKENDS, DEVICE, DTYPES, assert_output
from test_grpo_loss import LINEAR_CASES as GRPO_CASES
from test_grpo_loss import test_linear_grpo_loss as check_linear_grpo
from test_token_logprobs import check_linear_token_logprobs, check_token_logprobs, random_targets

import libra_kernels as lk
from libra_kernels import _dispatch

CHUNK_MB = "0.01"  # 10 KiB: a few rows per fp32 [rows, vocab] chunk at these vocabularies


@pytest.fixture
def chunks(monkeypatch):
    """Small chunks, and the number of chunks each row_chunks call cut (to prove several were used)."""
    monkeypatch.setenv("LIBRA_KERNELS_CHUNK_MB", CHUNK_MB)
    counts = []
    real = _dispatch.row_chunks

    def counting(rows, vocab):
        out = real(rows, vocab)
        counts.append(len(out))
        return out

    monkeypatch.setattr(_dispatch, "row_chunks", counting)
    return counts


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead, vocab, temperature", [((37,), 257, 0.7), ((2, 30), 1000, 1.0)])
def test_token_logprobs_in_many_chunks(chunks, dtype, lead, vocab, temperature):
    logits = 3 * torch.randn(*lead, vocab)
    check_token_logprobs("torch", logits, random_targets(lead, vocab), dtype, temperature)
    assert chunks and max(chunks) > 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
def test_linear_token_logprobs_in_many_chunks(chunks, dtype, with_bias):
    check_linear_token_logprobs("torch", (2, 65), 40, 300, 0.7, dtype, with_bias)
    assert chunks and max(chunks) > 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["all-options", "seq-sum"])
def test_linear_grpo_loss_in_many_chunks(chunks, dtype, case):
    sizes, options = GRPO_CASES[case]
    check_linear_grpo("torch", True, dtype, sizes, options)
    assert chunks and max(chunks) > 2


def test_the_chunk_budget_is_read_at_call_time(monkeypatch):
    monkeypatch.setenv("LIBRA_KERNELS_CHUNK_MB", CHUNK_MB)
    small = _dispatch.row_chunks(1000, 257)
    monkeypatch.setenv("LIBRA_KERNELS_CHUNK_MB", "64")
    assert len(small) > 50 and len(_dispatch.row_chunks(1000, 257)) == 1
    assert [s.start for s in small] == sorted(s.start for s in small) and small[-1].stop == 1000


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("group_size", [1, 3, 4, 12, 40])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_group_advantages_on_both_backends(backend, group_size, scale, dtype):
    rewards = torch.randn(120).to(DEVICE, dtype)
    rewards[:group_size] = 1.0  # a constant group: advantage 0, not NaN
    out = lk.group_advantages(rewards, group_size, scale=scale, backend=backend)
    assert_output(out, ref.group_advantages(rewards, group_size, scale=scale), dtype)
    if group_size > 1:
        assert torch.all(out[:group_size] == 0)


def _spy(monkeypatch):
    """Record which implementation group_advantages runs: "torch" or "triton"."""
    module = sys.modules["libra_kernels.group_advantages"]
    ran = []
    torch_impl, kernel = module._torch_group_advantages, module._group_adv_kernel

    def torch_spy(*args):
        ran.append("torch")
        return torch_impl(*args)

    class KernelSpy:
        def __getitem__(self, grid):
            ran.append("triton")
            return kernel[grid]

    monkeypatch.setattr(module, "_torch_group_advantages", torch_spy)
    monkeypatch.setattr(module, "_group_adv_kernel", KernelSpy())
    return ran


@pytest.mark.parametrize("backend, env, expected", [
    (None, None, "cuda-or-torch"), ("auto", None, "cuda-or-torch"), ("torch", None, "torch"),
    (None, "torch", "torch"), pytest.param(None, "triton", "triton", marks=pytest.mark.triton),
    pytest.param("triton", "torch", "triton", marks=pytest.mark.triton),  # an explicit backend wins over the env
])
def test_which_backend_auto_ran(monkeypatch, backend, env, expected):
    if env is None:
        monkeypatch.delenv("LIBRA_KERNELS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("LIBRA_KERNELS_BACKEND", env)
    ran = _spy(monkeypatch)
    lk.group_advantages(torch.randn(8, device=DEVICE), 4, backend=backend)
    if expected == "cuda-or-torch":
        expected = "triton" if torch.device(DEVICE).type == "cuda" else "torch"
    assert ran == [expected]
    assert _dispatch.resolve_backend(backend, torch.device(DEVICE)) == expected  # what `libra env` reports
