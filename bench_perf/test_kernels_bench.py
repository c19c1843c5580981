"""pytest-benchmark view of the quick shape, ours vs naive fwd+bwd; run by ``make bench``, not the test suite.

The side-by-side numbers that count (memory, Liger, torch.compile, full shapes) come from
``python -m bench_perf.kernels``; this file gives pytest-benchmark's history and comparison tooling a
small, fast case to track.
"""

from __future__ import annotations

import pytest
import torch

from bench_perf.common import clear_grads
from bench_perf.kernels import COMPETITORS, PRESETS, fwd_bwd, make_inputs


@pytest.fixture(scope="module")
def inputs():
    return make_inputs(PRESETS["quick"], torch.float32, torch.device("cpu"), kl=False)


@pytest.mark.parametrize("name", ["ours", "naive"])
def test_linear_grpo_fwd_bwd(benchmark, inputs, name):
    """Gradients are dropped before every round (outside the timing), as in the suite's own timer."""
    loss_fn = COMPETITORS[name][0](inputs)
    benchmark.group = "linear_grpo_loss quick fwd+bwd"
    loss = benchmark.pedantic(fwd_bwd, args=(loss_fn,), setup=lambda: clear_grads(inputs.leaves),
                              rounds=5, warmup_rounds=1)
    assert torch.isfinite(loss)
