"""group_advantages against verl's GRPO outcome-advantage convention."""
import pytest
import reference as ref
import torch
from helpers import DEVICE, assert_output

import libra_kernels as lk


@pytest.mark.parametrize("group_size", [1, 3, 4, 12])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_group_advantages(group_size, scale, dtype):
    rewards = torch.randn(12).to(DEVICE, dtype)
    advantages = lk.group_advantages(rewards, group_size, scale=scale)
    assert advantages.shape == (12,)
    assert_output(advantages, ref.group_advantages(rewards, group_size, scale=scale), dtype)


def test_group_advantages_eps():
    rewards = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0], device=DEVICE)
    assert_output(lk.group_advantages(rewards, 2, eps=0.5), ref.group_advantages(rewards, 2, eps=0.5))


@pytest.mark.parametrize("scale", [True, False])
def test_constant_groups_get_zero_advantage(scale):
    """A group where every sample scored the same carries no signal, even with std 0."""
    rewards = torch.tensor([1.0] * 4 + [0.0] * 4 + [0.5] * 4, device=DEVICE)
    advantages = lk.group_advantages(rewards, 4, scale=scale)
    assert advantages.dtype == torch.float32
    assert torch.all(advantages == 0)


def test_batch_not_divisible_by_group_size():
    with pytest.raises(ValueError, match="group_size|rewards"):
        lk.group_advantages(torch.randn(10, device=DEVICE), 4)
