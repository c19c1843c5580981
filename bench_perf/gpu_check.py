"""One prepared check for a CUDA machine (one NVIDIA H100/H200): kernel tests, kernel benchmarks, a GRPO step.

    make gpu-check OUT=runs/gpu-check          # or: python -m bench_perf.gpu_check --out DIR [--only PART ...]
    python -m bench_perf.gpu_check --list      # the parts and their time limits; needs no GPU

The parts run one after another, each in its own process group with its own time limit (``PARTS``), and the
limits add up to at most ``TOTAL_BUDGET_S`` (8 minutes) with the CUDA check and the kill grace included. A
part that finishes early leaves its unused time to the next one. A part that fails or runs out of time is
recorded in ``OUT/summary.json`` (status, seconds, return code, the tail of its stderr; full logs in
``OUT/logs/``) and the check goes on with the next part. ``summary.json`` is rewritten after every part, so
even a check killed from outside leaves what it did.

1. ``kernel-tests``: ``pytest tests/kernels`` with the tensors on CUDA and both backends ("torch" and the
   compiled "triton"; ``tests/kernels/helpers.py`` picks CUDA whenever torch sees it, and
   ``LIBRA_TEST_REQUIRE_CUDA=1`` turns a session without CUDA into an error), minus the ``slow`` AOT compile
   check (a CPU-side compile for sm_80/sm_90 that the compiled tests supersede on a GPU); junit XML in
   ``OUT/kernel-tests.xml``, counts in the summary.
2. ``kernel-bench-bf16`` and ``kernel-bench-fp32``: ``python -m bench_perf.kernels`` (fused linear GRPO
   fwd+bwd) at the Qwen LM-head shapes (bf16: H=896 and H=4096, fp32: H=896; N=1024, V=151936) for ours,
   naive PyTorch and, when ``liger_kernel`` imports, Liger's chunked and Triton GRPO losses side by side:
   median ms, TFLOP/s-equivalent, % of the dense peak and % of the roofline (``bench_perf.common.DEVICE_PEAKS``,
   from NVIDIA's datasheets). ``torch.compile`` of naive is left out (its compile alone would take a large
   share of the budget); ``python -m bench_perf.kernels`` runs it. JSON in ``OUT/kernels-{bf16,fp32}.json``.
3. ``grpo-step``: ``python -m bench_perf.grpo_step --quick --device cuda --variants ours-vllm``: our GRPO
   trainer on CUDA with a vLLM engine (CUDA graphs, sleep mode) on the tiny Qwen2; JSON in
   ``OUT/grpo-step.json``.

Exit status: 0 when every part passed, 1 when any part failed or timed out, 2 when torch sees no CUDA
device (checked first, before anything heavy runs).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "runs" / "gpu-check"
TOTAL_BUDGET_S = 480  # the whole check on one H100/H200, CUDA check and kill grace included
PREFLIGHT_S = 15  # reserved for importing torch, the CUDA check and the version probe
KILL_GRACE_S = 5  # after a part's limit: SIGTERM to its process group, then SIGKILL after this long
MIN_PART_S = 10  # a part that would get less than this (an overrun before it) is not started
TAIL_LINES = 40
NO_CUDA_EXIT = 2
# Variables that would change what the parts measure: the interpreter instead of compiled Triton, a forced
# kernel backend, or a chunk budget other than the default.
SCRUBBED_ENV = ("TRITON_INTERPRET", "LIBRA_KERNELS_BACKEND", "LIBRA_KERNELS_CHUNK_MB")


@dataclass(frozen=True)
class Part:
    """One step of the check: ``argv(out, timeout_s, ctx)`` is the command, ``output`` the file (under OUT)
    it must write to count as passed, ``needs`` the modules it cannot run without, ``digest(output path)``
    the headline numbers copied into the summary."""

    name: str
    timeout_s: int
    what: str
    output: str
    argv: Callable[[Path, float, dict[str, Any]], list[str]]
    needs: tuple[str, ...] = ()
    digest: Callable[[Path], Any] | None = None


def _pytest_argv(out: Path, timeout_s: float, ctx: dict[str, Any]) -> list[str]:
    argv = [sys.executable, "-m", "pytest", "tests/kernels", "-q", "-m", "not slow", "-p", "no:cacheprovider",
            f"--junitxml={out / 'kernel-tests.xml'}", "-o", "junit_suite_name=kernel-tests-cuda",
            "-o", "junit_family=xunit2"]
    if ctx.get("xdist"):  # Triton JIT compiles are CPU-bound: compile in parallel, all workers on the one GPU
        argv += ["-n", str(max(1, min(8, (os.cpu_count() or 2) // 2))), "--dist", "loadgroup"]
    return argv


def _competitors(ctx: dict[str, Any]) -> list[str]:
    return ["ours", "naive"] + (["liger", "liger-triton"] if ctx.get("liger") else [])


def _kernels_argv(shapes: list[str], dtype: str, worker_timeout_s: int) -> Callable[..., list[str]]:
    def argv(out: Path, timeout_s: float, ctx: dict[str, Any]) -> list[str]:
        return [sys.executable, "-m", "bench_perf.kernels", "--device", "cuda", "--shapes", *shapes,
                "--dtypes", dtype, "--competitors", *_competitors(ctx), "--timeout", str(worker_timeout_s),
                "--out", str(out / f"kernels-{dtype}.json")]
    return argv


def _grpo_argv(out: Path, timeout_s: float, ctx: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "bench_perf.grpo_step", "--quick", "--device", "cuda", "--variants", "ours-vllm",
            "--timeout", str(max(MIN_PART_S, int(timeout_s) - 10)), "--out", str(out / "grpo-step.json")]


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


def grpo_digest(path: Path) -> list[dict[str, Any]] | None:
    """Per variant: status, step time, tokens/s, engine start."""
    data = _read_json(path)
    if data is None:
        return None
    return [{"variant": r["variant"], "status": r["status"], "reason": r.get("reason"),
             "step_s_mean": r["summary"].get("step_s_mean"), "tokens_per_s": r["summary"].get("tokens_per_s"),
             "stages_s": r["summary"].get("stages_s"), "engine_start_s": r.get("engine_start_s"),
             "peak_cuda_allocated_mb": r.get("peak_cuda_allocated_mb")} for r in data.get("records", [])]


PARTS: list[Part] = [
    Part("kernel-tests", 105, "pytest tests/kernels on CUDA, backends torch and triton (not the slow AOT check)",
         "kernel-tests.xml", _pytest_argv, needs=("pytest", "triton")),
    Part("kernel-bench-bf16", 150, "bench_perf.kernels bf16 at qwen-h896 and qwen-h4096, ours vs naive vs Liger",
         "kernels-bf16.json", _kernels_argv(["qwen-h896", "qwen-h4096"], "bf16", 70), needs=("triton",),
         digest=kernels_digest),
    Part("kernel-bench-fp32", 60, "bench_perf.kernels fp32 at qwen-h896, ours vs naive vs Liger",
         "kernels-fp32.json", _kernels_argv(["qwen-h896"], "fp32", 45), needs=("triton",),
         digest=kernels_digest),
    Part("grpo-step", 130, "bench_perf.grpo_step --quick on CUDA, ours with vLLM rollouts",
         "grpo-step.json", _grpo_argv, needs=("vllm", "transformers"), digest=grpo_digest),
]


def planned_seconds(parts: list[Part] = PARTS) -> int:
    """The most the check can take: the CUDA check, every part's limit and its kill grace."""
    return PREFLIGHT_S + sum(p.timeout_s + KILL_GRACE_S for p in parts)


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
            f"nothing was run.")


def environment() -> dict[str, Any]:
    """Device, versions and which optional competitors are importable (written into the summary)."""
    import torch

    from bench_perf.common import device_description, git_commit, versions

    return {
        "device": device_description(torch.device("cuda")),
        "git_commit": git_commit(),
        "python": sys.executable,
        "versions": versions("torch", "triton", "vllm", "liger-kernel", "transformers", "pytest", "libra-rm"),
        "importable": {m: importlib.util.find_spec(m) is not None
                       for m in ("triton", "vllm", "liger_kernel", "xdist", "transformers", "pytest")},
    }


def part_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env["LIBRA_TEST_REQUIRE_CUDA"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ----------------------------------------------------------------------------- running parts


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):  # the group is already gone
        pass


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the part's process group (it was started in a session of its own), SIGKILL after the grace."""
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()


def run_command(name: str, argv: list[str], timeout_s: float, logs: Path, env: dict[str, str] | None = None,
                cwd: Path = REPO_ROOT) -> dict[str, Any]:
    """Run one part; never raises for the part's own failure. Returns status ("ok", "failed", "timeout"),
    return code, seconds and the tail of its stderr."""
    logs.mkdir(parents=True, exist_ok=True)
    out_log, err_log = logs / f"{name}.out", logs / f"{name}.err"
    begin = time.monotonic()
    with open(out_log, "w") as out_f, open(err_log, "w") as err_f:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdout=out_f, stderr=err_f, env=env, start_new_session=True,
                                    stdin=subprocess.DEVNULL)
        except OSError as exc:
            return {"status": "failed", "returncode": None, "seconds": 0.0, "stderr_tail": f"could not start: {exc}"}
        try:
            returncode = proc.wait(timeout=timeout_s)
            status = "ok" if returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            returncode, status = proc.returncode, "timeout"
        # Whatever the part left behind in its group (an engine process, a test worker) must not hold the GPU
        # or the time of the next part.
        _kill_group(proc.pid, signal.SIGKILL)
    seconds = time.monotonic() - begin
    stderr_tail = tail(err_log) or tail(out_log)
    if status == "timeout":
        stderr_tail = f"[killed after its {timeout_s:.0f} s limit]\n" + stderr_tail
    return {"status": status, "returncode": returncode, "seconds": round(seconds, 1), "stderr_tail": stderr_tail,
            "logs": {"stdout": str(out_log), "stderr": str(err_log)}}


def junit_counts(path: Path) -> dict[str, Any] | None:
    """Test counts and the failing test ids from a pytest junit XML, None when it cannot be read."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["time_s"] = round(sum(float(s.get("time", 0)) for s in suites), 1)
    failing = [f"{case.get('classname')}::{case.get('name')}" for s in suites for case in s.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    counts["failing"] = failing[:50]
    return counts


def part_timeout(index: int, parts: list[Part], deadline: float, now: float) -> float:
    """Part ``index`` may use everything up to the deadline except what the later parts (and its own kill
    grace) have reserved: its own limit, plus whatever earlier parts left unused."""
    reserved = sum(p.timeout_s + KILL_GRACE_S for p in parts[index + 1:]) + KILL_GRACE_S
    return deadline - now - reserved


def run_parts(parts: list[Part], out: Path, ctx: dict[str, Any], deadline: float,
              summary: dict[str, Any], env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every part in order, each recorded in ``summary["parts"]`` (and ``OUT/summary.json``) as it ends."""
    records = summary.setdefault("parts", [])
    for i, part in enumerate(parts):
        timeout_s = part_timeout(i, parts, deadline, time.monotonic())
        record: dict[str, Any] = {"name": part.name, "what": part.what, "timeout_s": part.timeout_s,
                                  "allowed_s": round(timeout_s, 1), "output": str(out / part.output)}
        missing = [m for m in part.needs if not importlib.util.find_spec(m)]
        if missing:
            record.update(status="failed", returncode=None, seconds=0.0,
                          stderr_tail=f"not run: {', '.join(missing)} not importable by {sys.executable}")
        elif timeout_s < MIN_PART_S:
            record.update(status="timeout", returncode=None, seconds=0.0,
                          stderr_tail=f"not run: only {timeout_s:.0f} s of the {TOTAL_BUDGET_S} s budget left")
        else:
            argv = part.argv(out, timeout_s, ctx)
            print(f"gpu-check: {part.name} (limit {timeout_s:.0f} s): {' '.join(argv[1:])}", file=sys.stderr,
                  flush=True)
            record["command"] = argv
            record.update(run_command(part.name, argv, timeout_s, out / "logs", env=env))
            if record["status"] == "ok" and not (out / part.output).exists():
                record.update(status="failed", stderr_tail=f"exited 0 but wrote no {part.output}\n"
                              + record["stderr_tail"])
        if part.output.endswith(".xml"):
            record["tests"] = junit_counts(out / part.output)
        if part.digest is not None and (out / part.output).exists():  # a partial JSON after a timeout too
            try:
                record["results"] = part.digest(out / part.output)
            except Exception as exc:  # a digest is a convenience: the JSON itself is the result
                record["results"] = f"could not digest {part.output}: {type(exc).__name__}: {exc}"
        records.append(record)
        print(f"gpu-check: {part.name}: {record['status']} in {record['seconds']:.0f} s", file=sys.stderr,
              flush=True)
        write_summary(out, summary)
    return records


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    parts = summary.get("parts", [])
    summary["status"] = "ok" if parts and all(p["status"] == "ok" for p in parts) else "failed"
    summary["failed_parts"] = [p["name"] for p in parts if p["status"] != "ok"]
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(out / "summary.json")


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"result folder (default {DEFAULT_OUT})")
    parser.add_argument("--only", nargs="+", choices=[p.name for p in PARTS], help="run only these parts")
    parser.add_argument("--list", action="store_true", help="print the parts and their limits, run nothing")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    start = time.monotonic()
    args = parse_args(argv)
    parts = [p for p in PARTS if not args.only or p.name in args.only]
    if args.list:
        for p in parts:
            print(f"{p.name:20s} {p.timeout_s:4d} s  {p.what}")
        print(f"{'total':20s} {planned_seconds(parts):4d} s  (budget {TOTAL_BUDGET_S} s: CUDA check "
              f"{PREFLIGHT_S} s and {KILL_GRACE_S} s kill grace per part included)")
        return 0
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    summary: dict[str, Any] = {
        "check": "gpu-check", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "out": str(out), "budget_s": TOTAL_BUDGET_S, "planned_s": planned_seconds(parts),
    }
    reason = no_cuda_message()
    if reason:
        print(reason, file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({**summary, "status": "no-cuda", "message": reason}, indent=2)
                                          + "\n")
        return NO_CUDA_EXIT
    for p in parts:  # an earlier check's results must not pass for this one's
        (out / p.output).unlink(missing_ok=True)
        for log in ("out", "err"):
            (out / "logs" / f"{p.name}.{log}").unlink(missing_ok=True)
    env_info = environment()
    summary.update(env_info)
    ctx = {"liger": env_info["importable"]["liger_kernel"], "xdist": env_info["importable"]["xdist"]}
    if not ctx["liger"]:
        summary["note"] = "liger_kernel not importable: the kernel benchmarks ran without the Liger competitors"
    print(f"gpu-check: {env_info['device']['name']}, {len(parts)} parts, at most {planned_seconds(parts)} s; "
          f"results in {out}", file=sys.stderr, flush=True)
    run_parts(parts, out, ctx, start + planned_seconds(parts), summary, env=part_env())
    summary["total_s"] = round(time.monotonic() - start, 1)
    write_summary(out, summary)
    for p in summary["parts"]:
        tests = p.get("tests") or {}
        extra = f"  {tests['passed']}/{tests['tests']} tests passed" if tests else ""
        print(f"  {p['name']:20s} {p['status']:8s} {p['seconds']:6.0f} s{extra}")
    print(f"gpu-check: {summary['status']} in {summary['total_s']:.0f} s; summary in {out / 'summary.json'}")
    return 0 if summary["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
