"""Every Triton kernel variant compiles for sm_80 and sm_90 on this CPU machine, without spills in the
main configurations (the real check is `python -m libra_kernels.aot`, run here in a fresh process because
the test session runs Triton in interpreter mode, which replaces the JIT functions)."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_aot_compile_sm80_sm90_without_spills(tmp_path):
    out = tmp_path / "aot.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "libra_kernels.aot", "--quiet", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads(out.read_text())
    kernels = {r["kernel"] for r in results}
    assert kernels == {"_token_logprobs_fwd", "_token_logprobs_bwd", "_linear_stats_kernel", "_linear_grad_kernel",
                       "_grpo_kernel", "_kl_fwd", "_group_adv_kernel"}
    assert {r["cap"] for r in results} == {80, 90}
    assert all(r["error"] is None and r["registers"] > 0 for r in results)
    assert not [r for r in results if r["main"] and r["spill_bytes"]]
