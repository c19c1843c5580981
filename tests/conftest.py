"""Session setup shared by all tests: the Triton interpreter on CPU-only machines, and the markers.

Where the tests run: the kernel tests put their tensors on CUDA whenever torch sees a device
(``tests/kernels/helpers.py``: ``DEVICE``) and run every op on both backends, "torch" and "triton" (compiled
on CUDA, under ``TRITON_INTERPRET=1`` on CPU). ``LIBRA_TEST_REQUIRE_CUDA=1`` (set by ``make gpu-check``) makes
a session without CUDA a usage error instead of a silent CPU run.
"""
import os

import pytest
import torch  # does not import triton, so the interpreter flag below still takes effect

if not torch.cuda.is_available():
    # Triton reads TRITON_INTERPRET when kernels are decorated, i.e. on the first libra_kernels import.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_report_header(config):
    if torch.cuda.is_available():
        return f"libra tests: CUDA ({torch.cuda.get_device_name(0)}), Triton kernels compiled"
    return f"libra tests: CPU, TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '')}"


def pytest_configure(config):
    if os.environ.get("LIBRA_TEST_REQUIRE_CUDA") == "1" and not torch.cuda.is_available():
        raise pytest.UsageError("LIBRA_TEST_REQUIRE_CUDA=1 but torch sees no CUDA device "
                                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    config.addinivalue_line("markers", "triton: runs the Triton kernels (under TRITON_INTERPRET=1 on CPU, so slow)")
    config.addinivalue_line("markers", "slow: takes minutes (the ahead-of-time compile check)")
    config.addinivalue_line("markers", "vllm: starts a real vLLM engine (about 25 s per start on CPU)")
    # The Triton interpreter's own numpy usage warns on every launch; it says nothing about our code.
    config.addinivalue_line("filterwarnings", "ignore:Conversion of an array with ndim > 0:DeprecationWarning")
