"""Per-token log-probs straight from hidden states: ``log_softmax((hidden @ weight.T + bias) / T)[target]``.

The [N, V] logits (and their gradient) are never materialised. Triton:

* ``_linear_stats_kernel``: grid (token blocks, vocabulary splits); each program computes logits tiles
  with ``tl.dot`` (fp32 accumulation; IEEE fp32 products for fp32 inputs, never TF32) and folds them
  into an online (max, sum, entropy) summary per row; the splits are merged afterwards. Splitting the
  vocabulary keeps the GPU full when there are few tokens.
* ``_linear_grad_kernel``: same grid; recomputes each logits tile, turns it into dL/dlogits in
  registers and accumulates ``d_hidden += dz @ W_tile`` and ``d_weight[tile] += dz^T @ h`` in fp32
  with atomics. Nothing of size [N, V] touches memory.

PyTorch: token chunks with a bounded fp32 [rows, V] buffer (``row_chunks``); non-fp32 weights are
upcast one vocabulary slice at a time, so no fp32 copy of the weight exists either.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _dispatch as D
from ._vocab_math import (
    chunk_grad_,
    chunk_log_softmax,
    combine,
    element_stats,
    log_softmax_,
    merge_partials,
    merge_stats,
    softmax_grad,
)

# Tile configurations by input dtype and kernel. `python -m libra_kernels.aot` compiles each for sm_80 and
# sm_90 and fails on register spills: these are the largest tiles found spill-free there (fp32 uses IEEE
# FMA dots, which need far more registers than bf16 tensor-core dots).
CONFIGS = {
    "fp32": {"stats": dict(BLOCK_N=64, BLOCK_V=64, BLOCK_K=32, num_warps=8, num_stages=2),
             "grad": dict(BLOCK_N=32, BLOCK_V=32, BLOCK_K=32, num_warps=4, num_stages=2)},
    "bf16": {"stats": dict(BLOCK_N=128, BLOCK_V=64, BLOCK_K=32, num_warps=8, num_stages=3),
             "grad": dict(BLOCK_N=64, BLOCK_V=128, BLOCK_K=32, num_warps=8, num_stages=3)},
}
WEIGHT_SLICE_MB = 64  # PyTorch backend: fp32 upcast of at most this much weight at a time


def config_for(dtype: torch.dtype, kernel: str) -> dict:
    return CONFIGS["fp32" if dtype == torch.float32 else "bf16"][kernel]


def dot_precision(dtype: torch.dtype) -> str:
    """IEEE fp32 products for fp32 inputs (never TF32); 16-bit inputs ignore the setting.

    Under the interpreter 16-bit operands are upcast first ("upcast"): Triton 3.6's interpreter returns
    garbage for bf16 ``tl.dot``, and the upcast is exact (bf16 products fit in fp32).
    """
    if dtype == torch.float32:
        return "ieee"
    return "upcast" if D.triton_interpreting() else "tf32"


@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr):
    if PRECISION == "upcast":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision=PRECISION)


# ----------------------------------------------------------------------------- Triton kernels


@triton.jit
def _load_rows(ptr, idx, idx_ok, ks, k_ok, stride):
    """The [len(idx), len(ks)] tile ptr[idx, ks] of a row-major matrix, 0 outside it."""
    return tl.load(ptr + idx[:, None] * stride + ks[None, :], mask=idx_ok[:, None] & k_ok[None, :], other=0.0)


@triton.jit
def _logits_tile(h_ptr, w_ptr, b_ptr, rows, cols, row_ok, col_ok, H, stride_h, stride_w, inv_t,
                 HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
                 PRECISION: tl.constexpr):
    """Scaled fp32 logits of a [BLOCK_N, BLOCK_V] tile; -inf in padded columns."""
    acc = tl.zeros([BLOCK_N, BLOCK_V], dtype=tl.float32)
    ks0 = tl.arange(0, BLOCK_K)
    for k0 in range(0, H, BLOCK_K):
        ks = k0 + ks0
        k_ok = ks < H
        a = _load_rows(h_ptr, rows, row_ok, ks, k_ok, stride_h)
        b = _load_rows(w_ptr, cols, col_ok, ks, k_ok, stride_w)
        acc = _dot(a, tl.trans(b), acc, PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    return tl.where(col_ok[None, :], acc * inv_t, float("-inf"))


@triton.jit
def _block_of(N, V, v_per_split, targets_ptr, BLOCK_N: tl.constexpr):
    """This program's token rows (and their targets) and vocabulary range [v_lo, v_hi)."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    target = tl.load(targets_ptr + rows, mask=row_ok, other=-1)
    v_lo = tl.program_id(1) * v_per_split
    return rows, row_ok, target, v_lo, tl.minimum(v_lo + v_per_split, V)


@triton.jit
def _linear_stats_kernel(
    h_ptr, w_ptr, b_ptr, targets_ptr, part_ptr, N, V, H, stride_h, stride_w, v_per_split, inv_t,
    HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows, row_ok, target, v_lo, v_hi = _block_of(N, V, v_per_split, targets_ptr, BLOCK_N)
    rows64 = rows.to(tl.int64)
    m = tl.full([BLOCK_N], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK_N], tl.float32)
    t = tl.zeros([BLOCK_N], tl.float32)
    z_target = tl.zeros([BLOCK_N], tl.float32)
    for v0 in range(v_lo, v_hi, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_ok = cols < v_hi
        z = _logits_tile(h_ptr, w_ptr, b_ptr, rows64, cols.to(tl.int64), row_ok, col_ok, H, stride_h, stride_w,
                         inv_t, HAS_BIAS, BLOCK_N, BLOCK_V, BLOCK_K, PRECISION)
        zm, zs, zt = element_stats(z)
        tm, ts, tt = merge_stats(zm, zs, zt, 1)
        m, s, t = combine(m, s, t, tm, ts, tt)
        z_target += tl.sum(tl.where(cols[None, :] == target[:, None], z, 0.0), axis=1)
    out = part_ptr + tl.program_id(1) * N + rows
    plane = tl.num_programs(1) * N
    tl.store(out, m, mask=row_ok)
    tl.store(out + plane, s, mask=row_ok)
    tl.store(out + 2 * plane, t, mask=row_ok)
    tl.store(out + 3 * plane, z_target, mask=row_ok)


@triton.jit
def _linear_grad_kernel(
    h_ptr, w_ptr, b_ptr, targets_ptr, lse_ptr, ent_ptr, g_ptr, gh_ptr, dh_ptr, dw_ptr, db_ptr,
    N, V, H, stride_h, stride_w, v_per_split, inv_t,
    HAS_BIAS: tl.constexpr, HAS_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr,
    BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    rows, row_ok, target, v_lo, v_hi = _block_of(N, V, v_per_split, targets_ptr, BLOCK_N)
    rows64 = rows.to(tl.int64)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)[:, None]
    ent = tl.load(ent_ptr + rows, mask=row_ok, other=0.0)[:, None]
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)[:, None]
    gh = tl.load(gh_ptr + rows, mask=row_ok, other=0.0)[:, None] if HAS_H else g
    ks0 = tl.arange(0, BLOCK_K)
    for v0 in range(v_lo, v_hi, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_ok = cols < v_hi
        cols64 = cols.to(tl.int64)
        z = _logits_tile(h_ptr, w_ptr, b_ptr, rows64, cols64, row_ok, col_ok, H, stride_h, stride_w, inv_t,
                         HAS_BIAS, BLOCK_N, BLOCK_V, BLOCK_K, PRECISION)
        dz = softmax_grad(z, cols[None, :] == target[:, None], lse, ent, g, gh, HAS_H) * inv_t
        dz = tl.where(row_ok[:, None] & col_ok[None, :], dz, 0.0)
        if HAS_BIAS:
            tl.atomic_add(db_ptr + cols, tl.sum(dz, axis=0), mask=col_ok)
        dz_in = dz.to(w_ptr.dtype.element_ty)
        for k0 in range(0, H, BLOCK_K):
            ks = k0 + ks0
            k_ok = ks < H
            w = _load_rows(w_ptr, cols64, col_ok, ks, k_ok, stride_w)
            h = _load_rows(h_ptr, rows64, row_ok, ks, k_ok, stride_h)
            dh = _dot(dz_in, w, None, PRECISION)
            tl.atomic_add(dh_ptr + rows64[:, None] * H + ks[None, :], dh, mask=row_ok[:, None] & k_ok[None, :])
            dw = _dot(tl.trans(dz_in), h, None, PRECISION)
            tl.atomic_add(dw_ptr + cols64[:, None] * H + ks[None, :], dw, mask=col_ok[:, None] & k_ok[None, :])


def _grid(n: int, v: int, device: torch.device, cfg: dict) -> tuple[int, int, int]:
    """(token blocks, vocabulary splits, vocabulary per split): enough programs to fill the device."""
    n_blocks = triton.cdiv(n, cfg["BLOCK_N"])
    v_tiles = triton.cdiv(v, cfg["BLOCK_V"])
    if device.type == "cuda":
        target_programs = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:  # interpreter: still exercise the split merge
        target_programs = 2 * n_blocks
    splits = max(1, min(v_tiles, triton.cdiv(target_programs, n_blocks)))
    tiles_per_split = triton.cdiv(v_tiles, splits)
    splits = triton.cdiv(v_tiles, tiles_per_split)
    return n_blocks, splits, tiles_per_split * cfg["BLOCK_V"]


def _launch_args(hidden, weight, bias, kernel):
    cfg = config_for(hidden.dtype, kernel)
    meta = dict(HAS_BIAS=bias is not None, PRECISION=dot_precision(hidden.dtype), **cfg)
    return cfg, meta, (bias if bias is not None else weight)


def triton_linear_stats(hidden, weight, bias, targets, inv_t):
    """(logp, lse, entropy) in fp32 for 2-D contiguous ``hidden`` [N, H]."""
    n, h = hidden.shape
    v = weight.shape[0]
    cfg, meta, b = _launch_args(hidden, weight, bias, "stats")
    n_blocks, splits, per_split = _grid(n, v, hidden.device, cfg)
    parts = torch.empty((4, splits, n), dtype=torch.float32, device=hidden.device)
    if n:
        _linear_stats_kernel[(n_blocks, splits)](hidden, weight, b, targets, parts, n, v, h, hidden.stride(0),
                                                 weight.stride(0), per_split, inv_t, **meta)
    lse, ent = merge_partials(parts[0], parts[1], parts[2])
    return parts[3].sum(0) - lse, lse, ent


def triton_linear_grad(hidden, weight, bias, targets, lse, ent, g, gh, inv_t):
    """fp32 (d_hidden, d_weight, d_bias | None) for upstream grads ``g`` (log-prob), ``gh`` (entropy | None)."""
    n, h = hidden.shape
    v = weight.shape[0]
    cfg, meta, b = _launch_args(hidden, weight, bias, "grad")
    n_blocks, splits, per_split = _grid(n, v, hidden.device, cfg)
    dh = torch.zeros((n, h), dtype=torch.float32, device=hidden.device)
    dw = torch.zeros((v, h), dtype=torch.float32, device=hidden.device)
    db = torch.zeros((v,), dtype=torch.float32, device=hidden.device) if bias is not None else dw
    if n:
        _linear_grad_kernel[(n_blocks, splits)](
            hidden, weight, b, targets, lse, ent, g, gh if gh is not None else g, dh, dw, db, n, v, h,
            hidden.stride(0), weight.stride(0), per_split, inv_t, HAS_H=gh is not None, **meta)
    return dh, dw, (db if bias is not None else None)


# ----------------------------------------------------------------------------- PyTorch chunks


def _weight_slices(weight: torch.Tensor):
    """Vocabulary slices of the weight; one slice when it is already fp32 (no copy needed)."""
    v, h = weight.shape
    step = v if weight.dtype == torch.float32 else max(1, WEIGHT_SLICE_MB * 2**20 // (4 * h))
    return [(i, min(v, i + step)) for i in range(0, v, step)]


def chunk_logits(h_c, weight, bias, inv_t, slices) -> torch.Tensor:
    """fp32 ``(h_c @ weight.T + bias) * inv_t`` for one token chunk, built slice by slice."""
    hf = h_c.float()
    z = hf.new_empty((h_c.shape[0], weight.shape[0]))
    for lo, hi in slices:
        torch.mm(hf, weight[lo:hi].float().t(), out=z[:, lo:hi])
    if bias is not None:
        z += bias.float()
    return z.mul_(inv_t) if inv_t != 1.0 else z


def chunk_backprop(dz, h_c, weight, d_weight, d_bias, slices, first: bool) -> torch.Tensor:
    """d_hidden of the chunk; writes (``first``) or accumulates into the fp32 ``d_weight`` / ``d_bias``.

    Writing on the first chunk spares zero-filling and re-reading the [V, H] buffer once.
    """
    hf = h_c.float()
    dh = hf.new_empty(hf.shape)
    for j, (lo, hi) in enumerate(slices):
        part = dz[:, lo:hi]
        w = weight[lo:hi].float()
        torch.mm(part, w, out=dh) if j == 0 else dh.addmm_(part, w)
        torch.mm(part.t(), hf, out=d_weight[lo:hi]) if first else d_weight[lo:hi].addmm_(part.t(), hf)
    if d_bias is not None:
        torch.sum(dz, 0, out=d_bias) if first else d_bias.add_(dz.sum(0))
    return dh


def _torch_backprop_chunk(h_c, weight, bias, targets, ent, g, gh, inv_t, dw, db, slices, first) -> torch.Tensor:
    """d_hidden of one token chunk (accumulating the weight/bias grads); its [rows, V] buffer dies here."""
    dz = chunk_grad_(log_softmax_(chunk_logits(h_c, weight, bias, inv_t, slices)), targets, ent, g, gh, inv_t)
    return chunk_backprop(dz, h_c, weight, dw, db, slices, first)


class _TorchLinearTokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, inv_t, with_entropy):
        n = hidden.shape[0]
        slices = _weight_slices(weight)
        logp = hidden.new_empty(n, dtype=torch.float32)
        ent = torch.empty_like(logp) if with_entropy else None
        for sl in D.row_chunks(n, weight.shape[0]):
            _, logp[sl], e = chunk_log_softmax(chunk_logits(hidden[sl], weight, bias, inv_t, slices), targets[sl],
                                               with_entropy)
            if with_entropy:
                ent[sl] = e
        ctx.save_for_backward(hidden, weight, bias, targets, ent)
        ctx.inv_t = inv_t
        return logp, ent

    @staticmethod
    def backward(ctx, g, gh):
        hidden, weight, bias, targets, ent = ctx.saved_tensors
        slices = _weight_slices(weight)
        n = hidden.shape[0]
        f32 = dict(dtype=torch.float32, device=hidden.device)
        g = torch.zeros(n, **f32) if g is None else g.float()
        dh = torch.empty(hidden.shape, **f32)
        dw = torch.empty(weight.shape, **f32)
        db = torch.empty(weight.shape[0], **f32) if bias is not None else None
        for sl in D.row_chunks(n, weight.shape[0]):
            dh[sl] = _torch_backprop_chunk(hidden[sl], weight, bias, targets[sl], None if ent is None else ent[sl],
                                           g[sl], None if gh is None else gh[sl].float(), ctx.inv_t, dw, db, slices,
                                           first=sl.start == 0)
        return dh.to(hidden.dtype), dw.to(weight.dtype), None if db is None else db.to(bias.dtype), None, None, None


class _TritonLinearTokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, inv_t):
        logp, lse, ent = triton_linear_stats(hidden, weight, bias, targets, inv_t)
        ctx.save_for_backward(hidden, weight, bias, targets, lse, ent)
        ctx.inv_t = inv_t
        return logp, ent

    @staticmethod
    def backward(ctx, g, gh):
        hidden, weight, bias, targets, lse, ent = ctx.saved_tensors
        g = torch.zeros_like(lse) if g is None else g.float().contiguous()
        gh = None if gh is None else gh.float().contiguous()
        dh, dw, db = triton_linear_grad(hidden, weight, bias, targets, lse, ent, g, gh, ctx.inv_t)
        return dh.to(hidden.dtype), dw.to(weight.dtype), None if db is None else db.to(bias.dtype), None, None


# ----------------------------------------------------------------------------- public API


def prepare_linear(hidden, weight, targets, bias, temperature):
    """Check the linear-head arguments; return 2-D contiguous (hidden, weight, bias, targets) and the batch shape."""
    D.check_float("hidden", hidden)
    D.check_float("weight", weight)
    D.check_temperature(temperature)
    if weight.dim() != 2:
        raise ValueError(f"weight must be [V, H], got shape {tuple(weight.shape)}")
    if hidden.dim() < 1 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden has shape {tuple(hidden.shape)} but weight has shape {tuple(weight.shape)}: "
                         "the last dimension of hidden must equal weight.shape[1]")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden dtype {hidden.dtype} differs from weight dtype {weight.dtype}")
    if bias is not None:
        D.check_float("bias", bias)
        D.check_shape("bias", bias, (weight.shape[0],), f"weight of shape {tuple(weight.shape)}")
    batch_shape = tuple(hidden.shape[:-1])
    D.check_targets(targets, batch_shape, weight.shape[0], f"weight of shape {tuple(weight.shape)}")
    D.check_same_device(hidden=hidden, weight=weight, targets=targets, bias=bias)
    h2 = hidden.reshape(-1, hidden.shape[-1]).contiguous()
    return h2, weight.contiguous(), None if bias is None else bias.contiguous(), \
        targets.reshape(-1).to(torch.int64).contiguous(), batch_shape


def linear_token_logprobs(hidden, weight, targets, *, bias=None, temperature=1.0, return_entropy=False, backend=None):
    """Log-probability of ``targets`` under ``softmax((hidden @ weight.T + bias) / temperature)``, fp32.

    hidden: [..., H], weight: [V, H], bias: [V] or None, targets: [...] in [0, V). Returns ``logp[...]``
    or ``(logp, entropy)``, differentiable w.r.t. hidden, weight and bias; the logits never exist whole.
    """
    h2, w, b, tgt, batch_shape = prepare_linear(hidden, weight, targets, bias, temperature)
    which = D.resolve_backend(backend, hidden.device)
    inv_t = 1.0 / float(temperature)
    if which == "triton":
        logp, ent = _TritonLinearTokenLogprobs.apply(h2, w, b, tgt, inv_t)
    else:
        logp, ent = _TorchLinearTokenLogprobs.apply(h2, w, b, tgt, inv_t, return_entropy)
    logp = logp.view(batch_shape)
    return (logp, ent.view(batch_shape)) if return_entropy else logp
