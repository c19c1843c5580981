"""The in-place log_softmax the PyTorch backends rely on equals the out-of-place one, at a real vocabulary."""

import torch

from libra_kernels._vocab_math import log_softmax_


def test_log_softmax_in_place_matches_at_qwen_vocab():
    z = torch.randn(3, 151936) * 4
    z[1, :100] = float("-inf")
    expected = torch.log_softmax(z, dim=-1)
    out = log_softmax_(z)
    assert out.data_ptr() == z.data_ptr()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
