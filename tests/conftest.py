"""Session setup shared by all tests: the Triton interpreter on CPU-only machines, and the markers."""
import os

import torch  # does not import triton, so the interpreter flag below still takes effect

if not torch.cuda.is_available():
    # Triton reads TRITON_INTERPRET when kernels are decorated, i.e. on the first libra_kernels import.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "triton: runs the Triton kernels (under TRITON_INTERPRET=1 on CPU, so slow)")
    config.addinivalue_line("markers", "slow: takes minutes (the ahead-of-time compile check)")
    config.addinivalue_line("markers", "vllm: starts a real vLLM engine (about 25 s per start on CPU)")
    # The Triton interpreter's own numpy usage warns on every launch; it says nothing about our code.
    config.addinivalue_line("filterwarnings", "ignore:Conversion of an array with ndim > 0:DeprecationWarning")
