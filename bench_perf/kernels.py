"""Fused linear GRPO loss, forward+backward: ours against naive PyTorch, torch.compile and Liger-Kernel.

    python -m bench_perf.kernels [--quick] [--shapes NAME|BxTxHxV ...] [--dtypes fp32 bf16] [--kl]
                                 [--large] [--reps K] [--out PATH]

Every competitor computes the same loss from the same inputs: clipped GRPO (eps_low=0.2, eps_high=0.28)
on ``log_softmax(hidden @ weight.T)[targets]``, aggregated "seq-mean-token-mean" (mean over a sequence's
unmasked tokens, then mean over the batch), with ``--kl`` adding ``1e-3 * k3(ref_logp, logp)``.

Each (shape, dtype, competitor) runs in its own fresh process (``common.run_worker``), which builds the
inputs, runs ``--warmup`` untimed fwd+bwd calls (compiling where needed; the first call's loss and
gradients are saved for the cross-check), measures the peak memory growth of one call, then times
``--reps`` calls. The parent compares every competitor's loss and gradients with ours, so a competitor
(or our kernel) that is fast because it is wrong shows up as a MISMATCH, and reports ratios ours/them.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from bench_perf.common import (
    RESULTS_DIR,
    clear_grads,
    device_description,
    device_slug,
    git_commit,
    peak_growth_mb,
    peak_tflops,
    print_table,
    roofline_tflops,
    run_worker,
    time_calls,
    versions,
    worker_main,
    write_json,
)

EPS_LOW, EPS_HIGH = 0.2, 0.28
KL_COEF = 1e-3  # used with --kl, for every competitor alike
AGG = "seq-mean-token-mean"
# Liger's loss_type for our AGG: in liger_kernel 0.8.5 chunked_loss/grpo_loss.py, "grpo" is
# sum_b(sum_t(loss * mask) / max(sum_t mask, 1)) / B, i.e. seq-mean-token-mean. For reference: "dapo" and
# "bnpo" are token-mean (over the full batch / the micro-batch), "dr_grpo" is seq-mean-token-sum-norm
# (sum / (B * max_completion_length)), "luspo" weights each token by its sequence length.
LIGER_LOSS_TYPE = "grpo"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Largest |difference| from ours accepted, relative to the largest |value| of ours. fp32 only differs
# by summation order; bf16 logits are rounded differently by each competitor (in the matmul output or not).
RTOL = {"fp32": 1e-4, "bf16": 5e-2}
# The targets ours must meet (CPU, N=1024, H=896, V=151936, fp32): max of ours/competitor.
TARGETS = [("time", "naive", 1.1), ("time", "liger", 1.0), ("mem", "naive", 0.40), ("mem", "liger", 0.60)]
FLOPS_CONVENTION = "6*N*H*V per fwd+bwd: 2NHV for the logits, 2NHV each for grad_hidden and grad_weight"
BYTES_CONVENTION = ("least HBM traffic of a fwd+bwd that never materialises the logits: read hidden and weight, "
                    "write grad_hidden and grad_weight (each in the input dtype), plus the per-token targets "
                    "(int64), mask, old_logp (and ref_logp with --kl) in fp32 and the fp32 advantages")
ROOFLINE_CONVENTION = ("roofline = min(peak dense TFLOP/s of the dtype, FLOPs / least bytes x HBM bandwidth), "
                       "peaks from bench_perf.common.DEVICE_PEAKS (NVIDIA datasheets)")


@dataclass(frozen=True)
class Shape:
    """Batch B x sequence T tokens (N = B*T rows) through a [V, H] LM head."""

    B: int
    T: int
    H: int
    V: int

    @property
    def N(self) -> int:
        return self.B * self.T

    @property
    def label(self) -> str:
        return f"N={self.N} H={self.H} V={self.V}"

    @classmethod
    def parse(cls, text: str) -> "Shape":
        """A preset name or ``BxTxHxV``."""
        if text in PRESETS:
            return PRESETS[text]
        try:
            return cls(*(int(part) for part in text.lower().split("x")))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"shape must be one of {sorted(PRESETS)} or BxTxHxV, got {text!r}")


PRESETS = {
    "quick": Shape(4, 64, 256, 32000),  # CI smoke run, seconds on CPU
    "qwen-h896": Shape(8, 128, 896, 151936),  # Qwen2.5-0.5B head; the main CPU case
    "qwen-h4096": Shape(8, 128, 4096, 151936),  # 7B-class head; 2.5 GB per fp32 weight gradient
}


# ----------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    """One benchmark's tensors; ``hidden`` and ``weight`` are the leaves whose gradients are compared."""

    hidden: torch.Tensor  # [B, T, H], requires grad
    weight: torch.Tensor  # [V, H], requires grad
    targets: torch.Tensor  # [B, T] int64
    mask: torch.Tensor  # [B, T] fp32 0/1, right padding
    advantages: torch.Tensor  # [B] fp32
    old_logp: torch.Tensor  # [B, T] fp32
    ref_logp: torch.Tensor | None  # [B, T] fp32, only with --kl
    kl_coef: float

    @property
    def leaves(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.hidden, self.weight


@torch.no_grad()
def current_logp(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int = 256):
    """log_softmax(hidden @ weight.T)[targets] in row chunks, so input creation never holds [N, V]."""
    h, t = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    parts = [
        torch.log_softmax((h[i:i + rows] @ weight.T).float(), -1).gather(1, t[i:i + rows, None]).squeeze(1)
        for i in range(0, h.shape[0], rows)
    ]
    return torch.cat(parts).view(targets.shape)


def make_inputs(shape: Shape, dtype: torch.dtype, device: torch.device, kl: bool, seed: int = 0) -> Inputs:
    """Deterministic inputs that exercise every branch of the loss.

    Logits have unit scale; old/ref log-probs are the current ones plus N(0, 0.2) noise, so the ratio
    is near 1 with a fifth of the tokens beyond a clip bound (both bounds, both advantage signs), and
    sequence lengths vary so the mask and the per-sequence mean matter.
    """
    gen = torch.Generator().manual_seed(seed)
    B, T, H, V = shape.B, shape.T, shape.H, shape.V

    def randn(*size: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*size, generator=gen) * scale).to(device)

    hidden = randn(B, T, H).to(dtype).requires_grad_()
    weight = randn(V, H, scale=H**-0.5).to(dtype).requires_grad_()
    targets = torch.randint(0, V, (B, T), generator=gen).to(device)
    lengths = torch.randint(T // 4, T + 1, (B,), generator=gen)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float().to(device)
    logp = current_logp(hidden, weight, targets)
    return Inputs(
        hidden=hidden,
        weight=weight,
        targets=targets,
        mask=mask,
        advantages=randn(B),
        old_logp=logp + randn(B, T, scale=0.2),
        ref_logp=logp + randn(B, T, scale=0.2) if kl else None,
        kl_coef=KL_COEF if kl else 0.0,
    )


# ----------------------------------------------------------------------------- competitors


def naive_grpo_loss(hidden, weight, targets, old_logp, advantages, mask, ref_logp, kl_coef):
    """The loss as plain PyTorch writes it (TRL-style): materialises the fp32 [B, T, V] logits and
    log-softmax, and lets autograd keep them for the backward."""
    logits = (hidden @ weight.T).float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    per_token = -torch.minimum(ratio * adv, ratio.clamp(1 - EPS_LOW, 1 + EPS_HIGH) * adv)
    if kl_coef:
        delta = ref_logp - logp  # k3 estimator of KL(pi || ref), as TRL and Liger use
        per_token = per_token + kl_coef * (torch.exp(delta) - delta - 1)
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return per_seq.mean()


def _naive_args(x: Inputs) -> tuple:
    return x.hidden, x.weight, x.targets, x.old_logp, x.advantages, x.mask, x.ref_logp, x.kl_coef


def build_ours(x: Inputs) -> Callable[[], torch.Tensor]:
    """libra_kernels.linear_grpo_loss -> (loss, stats); only the loss is differentiated."""
    from libra_kernels import linear_grpo_loss

    return lambda: linear_grpo_loss(
        x.hidden, x.weight, x.targets, x.old_logp, x.advantages, x.mask, ref_logp=x.ref_logp,
        eps_low=EPS_LOW, eps_high=EPS_HIGH, kl_coef=x.kl_coef, agg=AGG,
    )[0]


def build_naive(x: Inputs) -> Callable[[], torch.Tensor]:
    return partial(naive_grpo_loss, *_naive_args(x))


def build_compiled(x: Inputs) -> Callable[[], torch.Tensor]:
    """torch.compile (inductor, default mode) of the naive loss; it compiles on the first call."""
    return partial(torch.compile(naive_grpo_loss), *_naive_args(x))


def build_liger(x: Inputs) -> Callable[[], torch.Tensor]:
    """Liger's chunked fused-linear GRPO with its defaults (compiled loss math, one sequence per chunk).

    It runs forward *and* backward inside its forward and only hands the stored gradients out in
    ``loss.backward()``. Its ref log-probs are only used with ``use_ref_model=True``.
    """
    from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss

    module = LigerFusedLinearGRPOLoss(
        beta=x.kl_coef, use_ref_model=x.ref_logp is not None, epsilon_low=EPS_LOW, epsilon_high=EPS_HIGH,
        loss_type=LIGER_LOSS_TYPE, temperature=1.0,
    )
    return lambda: module(
        x.hidden, x.weight, x.targets, x.mask, x.advantages,
        ref_per_token_logps=x.ref_logp, old_per_token_logps=x.old_logp,
    )[0]


def build_liger_triton(x: Inputs) -> Callable[[], torch.Tensor]:
    """Liger's Triton GRPO loss on materialised logits (CUDA only); the logits matmul is timed with it.

    It takes logits for T+1 positions and drops the last (the usual next-token shift), so each sequence
    gets one zero hidden row appended; that row costs 1/T extra matmul and has zero gradient.
    """
    from liger_kernel.transformers.grpo_loss import triton_grpo_loss

    def loss() -> torch.Tensor:
        logits = F.pad(x.hidden, (0, 0, 0, 1)) @ x.weight.T
        return triton_grpo_loss(
            logits, x.old_logp, x.ref_logp, x.targets, x.advantages, x.mask, temperature=1.0,
            beta=x.kl_coef, eps_low=EPS_LOW, eps_high=EPS_HIGH, loss_type=LIGER_LOSS_TYPE, reduce=True,
        )[0]

    return loss


# name -> (builder, needs CUDA); "ours" first, every ratio is relative to it.
COMPETITORS: dict[str, tuple[Callable[[Inputs], Callable[[], torch.Tensor]], bool]] = {
    "ours": (build_ours, False),
    "naive": (build_naive, False),
    "compile": (build_compiled, False),
    "liger": (build_liger, False),
    "liger-triton": (build_liger_triton, True),
}


# ----------------------------------------------------------------------------- worker


def fwd_bwd(loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One training-step's worth of the loss: forward, then backward into hidden.grad and weight.grad."""
    loss = loss_fn()
    loss.backward()
    return loss.detach()


def weight_probe(H: int, device: torch.device) -> torch.Tensor:
    """Fixed random direction: grad_weight @ probe checks the [V, H] weight gradient through a [V] vector
    small enough to pass between processes."""
    return torch.randn(H, generator=torch.Generator().manual_seed(1)).to(device)


def run_competitor(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker body: inputs, warm-up (saving the first call's outputs), peak memory, then timing."""
    device = torch.device(spec["device"])
    x = make_inputs(Shape(**spec["shape"]), DTYPES[spec["dtype"]], device, spec["kl"])
    step = partial(fwd_bwd, COMPETITORS[spec["competitor"]][0](x))
    loss = step()
    torch.save({
        "loss": loss.float().cpu(),
        "grad_hidden": x.hidden.grad.float().cpu(),
        "grad_weight_proj": (x.weight.grad.float() @ weight_probe(x.weight.shape[1], device)).cpu(),
    }, spec["artifact_path"])
    for _ in range(spec["warmup"] - 1):
        clear_grads(x.leaves)
        step()
    clear_grads(x.leaves)
    memory = peak_growth_mb(step, device)
    timing = time_calls(step, device, reps=spec["reps"], warmup=0, grads_to_none=x.leaves)
    return {"status": "ok", "loss": loss.item(), "time_ms": timing, "peak_mem_mb": memory["peak_mb"],
            "mem_method": memory["method"]}


# ----------------------------------------------------------------------------- parent


def max_abs_diffs(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], dtype: str) -> dict[str, Any]:
    """Max |theirs - ours| per output and whether all are within RTOL[dtype] of ours' largest |value|."""
    diffs, ok = {}, True
    for key, ref in ours.items():
        diff = (theirs[key] - ref).abs().max().item()
        diffs[f"{key}_max_abs_diff"] = diff
        ok &= diff <= RTOL[dtype] * max(ref.abs().max().item(), 1e-12)
    return {**diffs, "ok": bool(ok)}


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, None when either side is missing."""
    return ours / theirs if ours is not None and theirs else None


def run_case(shape: Shape, dtype: str, names: list[str], args: argparse.Namespace, workdir: Path) -> dict:
    """All competitors on one (shape, dtype), each in its own worker; then correctness and ratios."""
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        artifact = workdir / f"{shape.N}x{shape.H}x{shape.V}-{dtype}-{name}.pt"
        spec = {"competitor": name, "shape": asdict(shape), "dtype": dtype, "device": args.device,
                "kl": args.kl, "reps": args.reps, "warmup": args.warmup, "artifact_path": str(artifact)}
        results[name] = run_worker("bench_perf.kernels", spec, args.timeout)
        if results[name]["status"] == "ok":
            results[name]["outputs"] = torch.load(artifact)
    ours = results.get("ours", {})
    for name, res in results.items():
        if res["status"] != "ok":
            continue
        if ours.get("status") == "ok":
            res["correctness"] = max_abs_diffs(ours["outputs"], res["outputs"], dtype)
        res["time_ratio_ours_over_this"] = ratio(ours.get("time_ms", {}).get("median"), res["time_ms"]["median"])
        res["mem_ratio_ours_over_this"] = ratio(ours.get("peak_mem_mb"), res["peak_mem_mb"])
        res.update(throughput(shape, dtype, res["time_ms"]["median"], args.device, args.kl))
    for res in results.values():
        res.pop("outputs", None)
    return {"shape": {**asdict(shape), "N": shape.N}, "dtype": dtype, "competitors": results,
            "targets": target_checks(shape, dtype, args.device, results)}


def min_bytes(shape: Shape, dtype: str, kl: bool) -> int:
    """Least bytes a fwd+bwd must move to and from HBM, under BYTES_CONVENTION."""
    itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
    per_token = 8 + 4 + 4 + (4 if kl else 0)  # targets, mask, old_logp, ref_logp
    return itemsize * 2 * (shape.N * shape.H + shape.V * shape.H) + shape.N * per_token + 4 * shape.B


def throughput(shape: Shape, dtype: str, median_ms: float, device: str, kl: bool = False) -> dict[str, Any]:
    """TFLOP/s-equivalent under FLOPS_CONVENTION, its share of the device's peak and of its roofline
    (ROOFLINE_CONVENTION); CUDA only. At the Qwen shapes the op is compute-bound (intensity ~ 6N / (2 *
    itemsize) FLOP/byte, far above the ridge point), so the roofline is the compute peak."""
    if not device.startswith("cuda"):
        return {}
    flops = 6 * shape.N * shape.H * shape.V
    tflops = flops / (median_ms * 1e-3) / 1e12
    name = torch.cuda.get_device_name(torch.device(device))
    peak = peak_tflops(name, dtype)
    nbytes = min_bytes(shape, dtype, kl)
    roof = roofline_tflops(name, dtype, flops, nbytes)
    return {"tflops": tflops, "pct_of_peak": 100 * tflops / peak if peak else "unknown",
            "arithmetic_intensity": flops / nbytes, "roofline_tflops": roof,
            "pct_of_roofline": 100 * tflops / roof if roof else "unknown"}


def target_checks(shape: Shape, dtype: str, device: str, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The four target ratios (ours/naive and ours/Liger, time and memory) against their limits.

    Only for the case the targets were set for (CPU, the qwen-h896 shape, fp32): elsewhere a MISSED
    would be a false alarm and a MET an empty claim, so no check is reported.
    """
    if (shape, dtype, torch.device(device).type) != (PRESETS["qwen-h896"], "fp32", "cpu"):
        return []
    checks = []
    for metric, other, limit in TARGETS:
        value = results.get(other, {}).get(f"{metric}_ratio_ours_over_this")
        checks.append({"ratio": f"ours/{other} {metric}", "value": value, "limit": limit,
                       "met": None if value is None else value <= limit})
    return checks


def status_text(res: dict[str, Any]) -> str:
    """Table status: ok, MISMATCH (outside tolerance of ours) or why it did not run."""
    if res["status"] != "ok":
        return f"{res['status']}: {res['reason'][:70]}"
    return "ok" if res.get("correctness", {}).get("ok", True) else "MISMATCH"


def case_label(case: dict[str, Any]) -> str:
    return Shape(**{k: case["shape"][k] for k in "BTHV"}).label


def report(cases: list[dict[str, Any]], cuda: bool) -> None:
    """Print the per-competitor table and the target-ratio table."""
    columns = ["competitor", "shape", "dtype", "median ms", "min ms", "max ms", "peak MB",
               "ours/this time", "ours/this mem", "d_loss", "d_grad_h", "d_grad_w", "others' cores"]
    columns += ["TFLOP/s", "% peak", "% roofline"] if cuda else []
    rows = []
    for case in cases:
        label = case_label(case)
        for name, res in case["competitors"].items():
            t, c = res.get("time_ms", {}), res.get("correctness", {})
            row = [name, label, case["dtype"], t.get("median"), t.get("min"), t.get("max"),
                   res.get("peak_mem_mb"), res.get("time_ratio_ours_over_this"),
                   res.get("mem_ratio_ours_over_this"), c.get("loss_max_abs_diff"),
                   c.get("grad_hidden_max_abs_diff"), c.get("grad_weight_proj_max_abs_diff"),
                   res.get("others_busy_cores")]
            row += [res.get("tflops"), res.get("pct_of_peak"), res.get("pct_of_roofline")] if cuda else []
            rows.append(row + [status_text(res)])
    print_table("linear GRPO loss, fwd+bwd (ratios are ours / competitor: < 1 means ours is better)",
                columns + ["status"], rows,
                caption="d_* = max |competitor - ours| of the loss, grad_hidden and grad_weight @ probe; "
                        "others' cores = CPU cores other processes kept busy meanwhile (> 0.1: times inflated)")
    target_rows = [[case_label(case), case["dtype"], chk["ratio"],
                    chk["value"], f"<= {chk['limit']}", {True: "MET", False: "MISSED", None: "n/a"}[chk["met"]]]
                   for case in cases for chk in case["targets"]]
    if target_rows:
        print_table("target ratios (CPU, N=1024 H=896 V=151936 fp32)",
                    ["shape", "dtype", "ratio", "value", "target", "result"], target_rows)
    else:
        print("no target ratios: the targets are set for CPU, N=1024 H=896 V=151936 fp32 (the default run)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the small 'quick' shape (CI smoke run)")
    parser.add_argument("--shapes", nargs="+", type=Shape.parse,
                        help=f"preset names {sorted(PRESETS)} or BxTxHxV (overrides the defaults)")
    parser.add_argument("--large", action="store_true",
                        help="on CPU, also run H=4096 (each fp32 weight gradient is 2.5 GB)")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES),
                        help="default: fp32 on CPU, bf16 and fp32 on CUDA")
    parser.add_argument("--kl", action="store_true", help=f"pass ref_logp with kl_coef={KL_COEF} to everyone")
    parser.add_argument("--competitors", nargs="+", choices=list(COMPETITORS), help="default: all that apply")
    parser.add_argument("--reps", type=int, default=5, help="timed calls on CPU (CUDA uses do_bench)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before measuring (>= 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per competitor")
    parser.add_argument("--out", type=Path, help="JSON path (default bench_perf/results/kernels-<device>.json)")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be >= 1: the first call compiles, and its outputs are cross-checked")
    return args


def default_plan(args: argparse.Namespace) -> tuple[list[Shape], list[str], list[str]]:
    """Shapes, dtypes and competitors for this device unless given on the command line."""
    cuda = args.device.startswith("cuda")
    shapes = args.shapes or ([PRESETS["quick"]] if args.quick else
                             [PRESETS["qwen-h896"]] + ([PRESETS["qwen-h4096"]] if cuda or args.large else []))
    dtypes = args.dtypes or (["bf16", "fp32"] if cuda else ["fp32"])
    names = args.competitors or [n for n, (_, needs_cuda) in COMPETITORS.items() if cuda or not needs_cuda]
    return shapes, dtypes, sorted(names, key=list(COMPETITORS).index)


def main(argv: list[str]) -> int:
    """Run every case, print the tables, write the JSON; exit 1 if ours failed or any output mismatched."""
    if argv[:1] == ["--worker"]:
        worker_main(argv[1], run_competitor)
        return 0
    args = parse_args(argv)
    device = torch.device(args.device)
    shapes, dtypes, names = default_plan(args)
    out = args.out or RESULTS_DIR / f"kernels-{device_slug(device)}{'-quick' if args.quick else ''}.json"
    header = {
        "suite": "kernels",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "device": device_description(device),
        "versions": versions("torch", "triton", "liger-kernel", "libra-rm"),
        "config": {"eps_low": EPS_LOW, "eps_high": EPS_HIGH, "kl_coef": KL_COEF if args.kl else 0.0, "agg": AGG,
                   "liger_loss_type": LIGER_LOSS_TYPE, "reps": args.reps, "warmup": args.warmup,
                   "rtol": RTOL, "flops_convention": FLOPS_CONVENTION, "bytes_convention": BYTES_CONVENTION,
                   "roofline_convention": ROOFLINE_CONVENTION,
                   "timing": "CUDA: triton.testing.do_bench; CPU: wall clock per call, grads set to None between",
                   "memory": "peak growth of one fwd+bwd above the usage after inputs and warm-up, fresh process"},
    }
    cases = []
    with tempfile.TemporaryDirectory(prefix="bench-kernels-") as tmp:
        for shape in shapes:
            for dtype in dtypes:
                print(f"{shape.label} {dtype}", file=sys.stderr, flush=True)
                cases.append(run_case(shape, dtype, names, args, Path(tmp)))
                # Written after every case, so a run cut short (a time limit) still leaves what it measured.
                write_json(out, {**header, "complete": False, "cases": cases})
    report(cases, device.type == "cuda")
    write_json(out, {**header, "complete": True, "cases": cases})
    print(f"wrote {out}", file=sys.stderr)
    bad = [(c["dtype"], n) for c in cases for n, r in c["competitors"].items()
           if (n == "ours" and r["status"] != "ok") or not r.get("correctness", {}).get("ok", True)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
