"""Logits-in per-token log-probs, forward+backward: ``libra_kernels.token_logprobs`` against the alternatives.

    python -m bench_perf.logprobs [--n 1024] [--vocab 151936] [--dtypes fp32 bf16] [--reps 5] [--out PATH]

The op is memory-bound: an ideal forward+backward reads the logits twice and writes their gradient once,
3 * N * V * itemsize bytes, which is what GB/s is computed from (on a GPU, with the share of the device's
HBM bandwidth; the goal is >= 90%). Competitors: ``naive`` (``log_softmax(logits.float() / T).gather``,
materialising fp32 copies), ``compile`` (``torch.compile`` of naive) and ``ours``. Each runs in a fresh
worker process; peak memory is the growth of one call above the inputs.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from bench_perf.common import (
    RESULTS_DIR,
    clear_grads,
    device_description,
    device_slug,
    git_commit,
    peak_growth_mb,
    peak_hbm_gbps,
    print_table,
    run_worker,
    time_calls,
    versions,
    worker_main,
    write_json,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TEMPERATURE = 1.0


def naive(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float() / TEMPERATURE, dim=-1).gather(-1, targets[:, None]).squeeze(-1)


def ours(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    import libra_kernels as lk

    return lk.token_logprobs(logits, targets, temperature=TEMPERATURE)


COMPETITORS: dict[str, Callable[[], Callable]] = {
    "ours": lambda: ours,
    "naive": lambda: naive,
    "compile": lambda: torch.compile(naive),
}


def run_competitor(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker body: inputs, warm-up, peak memory growth of one fwd+bwd, then timing."""
    device = torch.device(spec["device"])
    gen = torch.Generator(device="cpu").manual_seed(0)
    logits = (torch.randn(spec["n"], spec["vocab"], generator=gen) * 2).to(device, DTYPES[spec["dtype"]])
    logits.requires_grad_(True)
    targets = torch.randint(0, spec["vocab"], (spec["n"],), generator=gen).to(device)
    fn = COMPETITORS[spec["competitor"]]()
    grad_out = torch.randn(spec["n"], generator=gen).to(device)

    def step():
        (fn(logits, targets) * grad_out).sum().backward()

    step()
    torch.save({"grad": logits.grad.float().cpu(), "logp": fn(logits, targets).detach().float().cpu()},
               spec["artifact_path"])
    clear_grads([logits])
    memory = peak_growth_mb(step, device)
    timing = time_calls(step, device, reps=spec["reps"], warmup=1, grads_to_none=[logits])
    return {"status": "ok", "time_ms": timing, "peak_mem_mb": memory["peak_mb"]}


def bandwidth(spec: dict[str, Any], median_ms: float) -> dict[str, Any]:
    itemsize = torch.empty((), dtype=DTYPES[spec["dtype"]]).element_size()
    gbps = 3 * spec["n"] * spec["vocab"] * itemsize / (median_ms * 1e-3) / 1e9
    out: dict[str, Any] = {"gbps": gbps}
    if spec["device"].startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(spec["device"]))
        peak = peak_hbm_gbps(name)  # bench_perf.common.DEVICE_PEAKS, with its sources
        out["pct_of_hbm"] = 100 * gbps / peak if peak else "unknown"
    return out


def run_case(dtype: str, args: argparse.Namespace, tmp: str) -> dict[str, dict[str, Any]]:
    """Every competitor on one dtype, each in its own worker; then bandwidth, ratios and the check vs naive."""
    results, outputs = {}, {}
    for name in COMPETITORS:
        spec = {"competitor": name, "n": args.n, "vocab": args.vocab, "dtype": dtype, "device": args.device,
                "reps": args.reps, "artifact_path": f"{tmp}/{dtype}-{name}.pt"}
        results[name] = res = run_worker("bench_perf.logprobs", spec, args.timeout)
        if res["status"] == "ok":
            res.update(bandwidth(spec, res["time_ms"]["median"]))
            outputs[name] = torch.load(spec["artifact_path"])
    mine = results["ours"]
    for name, res in results.items():
        if name in outputs and "naive" in outputs:
            res["max_abs_diff_vs_naive"] = {k: (outputs[name][k] - outputs["naive"][k]).abs().max().item()
                                            for k in outputs[name]}
        if res["status"] == "ok" and mine["status"] == "ok":
            res["time_ratio_ours_over_this"] = mine["time_ms"]["median"] / res["time_ms"]["median"]
            res["mem_ratio_ours_over_this"] = mine["peak_mem_mb"] / max(res["peak_mem_mb"], 1e-9)
    return results


def table_row(name: str, dtype: str, res: dict[str, Any]) -> list[Any]:
    return [name, dtype, res.get("time_ms", {}).get("median"), res.get("peak_mem_mb"), res.get("gbps"),
            res.get("pct_of_hbm", "-"), res.get("time_ratio_ours_over_this"), res.get("mem_ratio_ours_over_this"),
            res["status"] if res["status"] == "ok" else res["reason"]]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1024, help="tokens")
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, run_competitor)
        return 0
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        cases = {dtype: run_case(dtype, args, tmp) for dtype in args.dtypes}
    rows = [table_row(name, dtype, res) for dtype, results in cases.items() for name, res in results.items()]
    print_table(f"token_logprobs fwd+bwd, N={args.n} V={args.vocab} ({device.type})",
                ["competitor", "dtype", "median ms", "peak MB", "GB/s", "% of HBM", "ours/this time", "ours/this mem",
                 "status"], rows)
    out = args.out or RESULTS_DIR / f"logprobs-{device_slug(device)}.json"
    write_json(out, {"suite": "logprobs", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                     "git_commit": git_commit(), "device": device_description(device),
                     "versions": versions("torch", "triton"), "n": args.n, "vocab": args.vocab,
                     "bytes_convention": "3*N*V*itemsize per fwd+bwd", "cases": cases})
    print(f"wrote {out}")
    return 1 if any(r["status"] != "ok" for c in cases.values() for r in c.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
