"""Every buffer the PyTorch backends create must live on the inputs' device (``device=`` given), or the
``backend="torch"`` path breaks on a GPU. A CPU run cannot see a GPU, so the tensor factories are wrapped
while each op runs forward and backward (the backward runs on autograd's own thread, where a default-device
context would not reach): any factory called from ``libra_kernels`` without ``device=`` is recorded."""
import sys
from pathlib import Path

import pytest
import torch

import libra_kernels as lk

KERNELS_DIR = str(Path(lk.__file__).parent)
FACTORIES = ("empty", "zeros", "ones", "full", "arange", "tensor", "rand", "randn")


def _inputs():
    b, t, h, v = 2, 5, 8, 11
    hidden = torch.randn(b, t, h, requires_grad=True)
    weight = torch.randn(v, h, requires_grad=True)
    bias = torch.randn(v, requires_grad=True)
    logits = torch.randn(b, t, v, requires_grad=True)
    targets = torch.randint(0, v, (b, t))
    old = torch.randn(b, t) * 0.1 - 2
    ref = torch.randn(b, t) * 0.1 - 2
    adv = torch.randn(b)
    mask = (torch.rand(b, t) > 0.3).float()
    return dict(hidden=hidden, weight=weight, bias=bias, logits=logits, targets=targets, old=old, ref=ref,
                adv=adv, mask=mask)


def _ops():
    """(name, fn(inputs) -> scalar to backprop) for every op with buffers of its own."""
    return {
        "token_logprobs": lambda x: lk.token_logprobs(x["logits"], x["targets"], backend="torch").sum(),
        "token_logprobs+entropy": lambda x: sum(o.sum() for o in lk.token_logprobs(
            x["logits"], x["targets"], return_entropy=True, backend="torch")),
        "linear_token_logprobs": lambda x: lk.linear_token_logprobs(
            x["hidden"], x["weight"], x["targets"], bias=x["bias"], backend="torch").sum(),
        "linear_token_logprobs+entropy": lambda x: sum(o.sum() for o in lk.linear_token_logprobs(
            x["hidden"], x["weight"], x["targets"], bias=x["bias"], return_entropy=True, backend="torch")),
        "linear_grpo_loss": lambda x: lk.linear_grpo_loss(
            x["hidden"], x["weight"], x["targets"], x["old"], x["adv"], x["mask"], bias=x["bias"], ref_logp=x["ref"],
            kl_coef=1e-3, return_entropy=True, backend="torch")[0],
        "grpo_loss": lambda x: lk.grpo_loss(
            lk.linear_token_logprobs(x["hidden"], x["weight"], x["targets"], backend="torch"), x["old"], x["adv"],
            x["mask"], ref_logp=x["ref"], kl_coef=1e-3, backend="torch")[0],
        "kl_penalty": lambda x: lk.kl_penalty(x["old"].requires_grad_(), x["ref"], backend="torch").sum(),
    }


@pytest.fixture
def undeviced(monkeypatch):
    """The factory calls made from libra_kernels without ``device=``: (function, file:line)."""
    calls = []
    for name in FACTORIES:
        original = getattr(torch, name)

        def wrapped(*args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "device" not in kwargs and caller.startswith(KERNELS_DIR):
                calls.append(f"torch.{_name} at {Path(caller).name}:{sys._getframe(1).f_lineno}")
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch, name, wrapped)
    return calls


@pytest.mark.parametrize("name", list(_ops()))
def test_torch_backend_creates_its_buffers_on_the_inputs_device(name, undeviced):
    _ops()[name](_inputs()).backward()
    assert undeviced == [], f"buffers created without device= (they would be on the CPU under CUDA inputs): {undeviced}"
