"""Backend choice and argument checks shared by every op.

Each public op accepts ``backend=None|"auto"|"torch"|"triton"``. "auto" means Triton for CUDA tensors and
PyTorch otherwise; the ``LIBRA_KERNELS_BACKEND`` environment variable replaces "auto" so a whole program
can be switched without touching call sites. Triton on CPU tensors only works through the interpreter
(``TRITON_INTERPRET=1``), which we say plainly instead of failing deep inside Triton.
"""

from __future__ import annotations

import os

import torch

BACKENDS = ("torch", "triton")


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str | None, device: torch.device) -> str:
    source = "backend"
    if backend is None or backend == "auto":
        backend, source = os.environ.get("LIBRA_KERNELS_BACKEND") or "auto", "LIBRA_KERNELS_BACKEND"
        if backend == "auto":
            return "triton" if device.type == "cuda" else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"{source} must be one of None, 'auto', 'torch', 'triton'; got {backend!r}")
    if backend == "triton" and device.type != "cuda" and not triton_interpreting():
        raise ValueError(
            f"backend='triton' needs CUDA tensors (got {device.type}); set TRITON_INTERPRET=1 before "
            "importing triton to run the kernels on CPU through the interpreter"
        )
    return backend


def check_float(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def check_same_device(**tensors: torch.Tensor | None) -> None:
    present = {k: v for k, v in tensors.items() if v is not None}
    devices = {str(v.device) for v in present.values()}
    if len(devices) > 1:
        detail = ", ".join(f"{k} on {v.device}" for k, v in present.items())
        raise ValueError(f"all tensors must be on one device: {detail}")


def check_shape(name: str, t: torch.Tensor, shape: tuple[int, ...], ref: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(t.shape)} but {ref} requires {tuple(shape)}")


def check_targets(targets: torch.Tensor, batch_shape: tuple[int, ...], vocab: int, ref: str) -> None:
    if not isinstance(targets, torch.Tensor) or targets.is_floating_point() or targets.is_complex() \
            or targets.dtype == torch.bool:
        dtype = getattr(targets, "dtype", type(targets).__name__)
        raise ValueError(f"targets must be an integer tensor, got {dtype}")
    check_shape("targets", targets, batch_shape, ref)
    if targets.numel() and bool(((targets < 0) | (targets >= vocab)).any()):
        lo, hi = int(targets.min()), int(targets.max())
        raise ValueError(f"targets must lie in [0, {vocab}) (vocabulary of {ref}); got values in [{lo}, {hi}]")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def row_chunks(rows: int, vocab: int):
    """Slices of ``rows`` such that one fp32 [rows, vocab] buffer stays within the budget.

    The budget (MiB, ``LIBRA_KERNELS_CHUNK_MB``, default 64) bounds the working set of the PyTorch
    backends: each processes one chunk at a time in a function of its own, so exactly one such buffer is
    alive at any moment, whatever the number of tokens.
    """
    budget_mb = float(os.environ.get("LIBRA_KERNELS_CHUNK_MB", "64"))
    step = max(1, int(budget_mb * 2**20) // (4 * max(vocab, 1)))
    return [slice(i, min(rows, i + step)) for i in range(0, rows, step)]
