"""Session setup shared by all tests: Triton interpreter on CPU-only machines, import fallback, markers."""
import importlib.util
import os
import sys
from pathlib import Path

import torch  # does not import triton, so the interpreter flag below still takes effect

if not torch.cuda.is_available():
    # Triton reads TRITON_INTERPRET when kernels are decorated, i.e. on the first libra_kernels import.
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]


def _import_kernels_from_source():
    """Map ROOT/kernels to `libra_kernels` when the package is not installed (before `pip install -e .`)."""
    init = ROOT / "kernels" / "__init__.py"
    if not init.exists():
        return  # leave the ImportError to the test modules so that they fail loudly
    spec = importlib.util.spec_from_file_location(
        "libra_kernels", init, submodule_search_locations=[str(init.parent)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["libra_kernels"] = module
    spec.loader.exec_module(module)


try:
    import libra_kernels  # noqa: F401
except ModuleNotFoundError as exc:
    if exc.name != "libra_kernels":
        raise
    _import_kernels_from_source()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "triton: runs the Triton kernels (under TRITON_INTERPRET=1 on CPU, so slow)"
    )
    # The Triton interpreter's own numpy usage warns on every launch; it says nothing about our code.
    config.addinivalue_line("filterwarnings", "ignore:Conversion of an array with ndim > 0:DeprecationWarning")
    config.addinivalue_line("markers", "slow: takes minutes (the ahead-of-time compile check)")
