"""`make gpu-check`: on a machine without CUDA it refuses cleanly, its limits fit the 8-minute budget, its part
runner records a failing, hanging or input-less part and goes on (with stand-in parts), and `make gpu-check
DRY_RUN=1` runs every real part end to end on CPU at the smallest size, whose report numbers are checked
against the files the runs wrote.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench_perf import gpu_check, parts
from bench_perf.common import peak_hbm_gbps, peak_tflops, roofline_tflops

REPO = Path(__file__).resolve().parents[2]
NO_CUDA_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def test_make_gpu_check_without_cuda_exits_2_with_a_clear_message(tmp_path):
    out = tmp_path / "check"
    begin = time.monotonic()
    proc = subprocess.run(["make", "-s", "gpu-check", f"OUT={out}", f"PY={sys.executable}"], cwd=REPO,
                          env=NO_CUDA_ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no CUDA device visible to torch" in proc.stderr and "nothing was run" in proc.stderr
    assert time.monotonic() - begin < 60  # stopped before anything heavy
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "no-cuda" and "parts" not in summary


def test_script_without_cuda_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench_perf.gpu_check", "--out", str(tmp_path)], cwd=REPO,
                          env=NO_CUDA_ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == gpu_check.NO_CUDA_EXIT == 2, proc.stderr
    assert "no CUDA device" in proc.stderr
    assert not (tmp_path / "logs").exists()


def test_parts_and_limits_fit_in_8_minutes():
    names = [p.name for p in gpu_check.PARTS]
    assert names == ["kernel-tests", "kernel-bench-bf16", "kernel-bench-fp32", "judge-data", "judge-eval-base",
                     "judge-sft", "judge-eval-sft", "judge-grpo-sync", "judge-eval-grpo-sync", "judge-grpo-async",
                     "judge-eval-grpo-async"]
    assert all(p.timeout_s >= parts.MIN_PART_S for p in gpu_check.PARTS)
    total = gpu_check.PREFLIGHT_S + sum(p.timeout_s + parts.KILL_GRACE_S for p in gpu_check.PARTS)
    assert total == gpu_check.planned_seconds() <= gpu_check.TOTAL_BUDGET_S <= 480
    # The first part's allowance at the start of the check is its own limit (plus the unused preflight time).
    start = 1000.0
    deadline = start + gpu_check.planned_seconds()
    first = parts.part_timeout(0, gpu_check.PARTS, deadline, start + gpu_check.PREFLIGHT_S)
    assert first == pytest.approx(gpu_check.PARTS[0].timeout_s)
    # The worker limits inside the kernel benchmarks fit in their part's limit.
    for part in gpu_check.PARTS:
        argv = part.argv(Path("/o"), part.timeout_s, {"liger": True, "xdist": True, "data": Path("/d")})
        if "--timeout" in argv:
            assert float(argv[argv.index("--timeout") + 1]) < part.timeout_s
    # Every part reads only what an earlier part writes.
    written = set()
    for part in gpu_check.PARTS:
        assert set(part.inputs) <= written, part.name
        written.add(part.output)


def test_commands_run_on_cuda_and_write_into_out(tmp_path, monkeypatch):
    ctx = {"liger": True, "xdist": True, "data": Path("/shared/data")}
    argv = {p.name: p.argv(tmp_path, p.timeout_s, ctx) for p in gpu_check.PARTS}
    assert "tests/kernels" in argv["kernel-tests"] and f"--junitxml={tmp_path / 'kernel-tests.xml'}" in argv[
        "kernel-tests"]
    tests = argv["kernel-tests"]
    assert tests[tests.index("not slow") - 1] == "-m"  # everything but the CPU-side AOT compile check
    for name, dtype in (("kernel-bench-bf16", "bf16"), ("kernel-bench-fp32", "fp32")):
        a = argv[name]
        assert a[a.index("--device") + 1] == "cuda" and a[a.index("--dtypes") + 1] == dtype
        assert {"ours", "naive", "liger", "liger-triton"} <= set(a)
        assert a[a.index("--out") + 1] == str(tmp_path / f"kernels-{dtype}.json")
    assert "liger" not in gpu_check.PARTS[1].argv(tmp_path, 100, {"liger": False})
    work = tmp_path / "judge"
    assert argv["judge-data"][-2:] == ["--scale", "gpu"] and "/shared/data" in argv["judge-data"]
    for name, model in (("eval-base", "model"), ("eval-sft", "sft/final"), ("eval-grpo-sync", "grpo-sync/final"),
                        ("eval-grpo-async", "grpo-async/final")):
        a = argv[f"judge-{name}"]
        assert a[a.index("--model") + 1] == str(work / model) and a[a.index("--out") + 1] == str(work / name)
        assert a[a.index("--bench") + 1] == str(work / "data" / "bench.jsonl")
    sync, asynchronous = argv["judge-grpo-sync"], argv["judge-grpo-async"]
    assert f"model.path={work / 'sft' / 'final'}" in sync and "rollout.max_staleness=1" not in sync
    assert asynchronous[-1] == "rollout.max_staleness=1" and f"run.out={work / 'grpo-async'}" in asynchronous
    # Parts see compiled Triton and the default backend, and the tests insist on CUDA (not in a dry run).
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    env = gpu_check.part_env()
    assert "TRITON_INTERPRET" not in env and env["LIBRA_TEST_REQUIRE_CUDA"] == "1"
    assert "LIBRA_TEST_REQUIRE_CUDA" not in gpu_check.part_env(dry_run=True)
    dry = {p.name: p.argv(tmp_path, p.timeout_s, {**ctx, "dry_run": True}) for p in gpu_check.PARTS}
    assert dry["kernel-tests"][3] == gpu_check.DRY_KERNEL_TESTS and "cpu" in dry["kernel-bench-bf16"]
    assert dry["judge-data"][-2:] == ["--scale", "dry"]


def _part(name, code, timeout_s=30, output=None, inputs=()):
    """A stand-in part: runs ``python -c code`` with OUT as its first argument."""
    return parts.Part(name, timeout_s, f"stand-in {name}", output or f"{name}.json",
                      lambda out, t, ctx: [sys.executable, "-c", code, str(out)], inputs=inputs)


def _alive(pid):
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_failed_and_hung_parts_are_recorded_and_the_check_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(parts, "MIN_PART_S", 3)  # shorter limits than the real ones, same logic
    monkeypatch.setattr(parts, "KILL_GRACE_S", 2)
    write = "import sys, pathlib; pathlib.Path(sys.argv[1], '{}').write_text('{{}}')"
    pid_file = tmp_path / "grandchild.pid"
    stand_ins = [  # the hanging part first: later parts would hand their unused time to it
        _part("hangs", "import pathlib, subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', "
                       "'import time; time.sleep(60)']); pathlib.Path(sys.argv[1], 'grandchild.pid')"
                       ".write_text(str(child.pid)); print('started', file=sys.stderr, flush=True); time.sleep(60)",
              timeout_s=parts.MIN_PART_S),
        _part("fails", "import sys; print('boom: bad kernel', file=sys.stderr); sys.exit(3)"),
        _part("silent", "pass"),  # exits 0 without its output file
        _part("passes", write.format("passes.json")),
        _part("needs-silent", write.format("x.json"), inputs=("silent.json",)),  # what "silent" never wrote
    ]
    summary = {}
    begin = time.monotonic()
    deadline = begin + gpu_check.planned_seconds(stand_ins) - gpu_check.PREFLIGHT_S + 1
    parts.run_parts(stand_ins, tmp_path, {}, deadline, summary)
    assert time.monotonic() - begin < parts.MIN_PART_S + parts.KILL_GRACE_S + 30
    saved = json.loads((tmp_path / "summary.json").read_text())
    by_name = {p["name"]: p for p in saved["parts"]}
    assert list(by_name) == ["hangs", "fails", "silent", "passes", "needs-silent"]
    assert by_name["fails"]["status"] == "failed" and by_name["fails"]["returncode"] == 3
    assert "boom: bad kernel" in by_name["fails"]["stderr_tail"]
    assert by_name["hangs"]["status"] == "timeout" and "started" in by_name["hangs"]["stderr_tail"]
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    assert not _alive(grandchild), "the part's own child outlived its time limit"
    assert by_name["hangs"]["seconds"] < parts.MIN_PART_S + parts.KILL_GRACE_S + 5
    assert by_name["silent"]["status"] == "failed" and "wrote no silent.json" in by_name["silent"]["stderr_tail"]
    assert by_name["passes"]["status"] == "ok" and by_name["passes"]["seconds"] >= 0
    assert by_name["needs-silent"]["status"] == "skipped" and "needs silent.json" in by_name["needs-silent"][
        "stderr_tail"]
    assert saved["status"] == "failed" and saved["failed_parts"] == ["hangs", "fails", "silent", "needs-silent"]
    assert (tmp_path / "logs" / "fails.err").exists()


def test_main_with_cuda_stubbed_exits_1_when_a_part_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "no_cuda_message", lambda: None)
    monkeypatch.setattr(gpu_check, "environment", lambda dry_run: {
        "device": {"name": "stand-in GPU"}, "importable": {"liger_kernel": False, "xdist": False}})
    (tmp_path / "ok.json").write_text("stale")  # an earlier check's output must not count
    monkeypatch.setattr(gpu_check, "PARTS", [_part("ok", "pass", output="ok.json"),
                                             _part("bad", "raise SystemExit(1)")])
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [p["status"] for p in summary["parts"]] == ["failed", "failed"]
    assert "liger_kernel not importable" in summary["note"] and summary["total_s"] < 60
    writes = "import sys, pathlib; pathlib.Path(sys.argv[1], 'ok.json').write_text('{}')"
    monkeypatch.setattr(gpu_check, "PARTS", [_part("ok", writes, output="ok.json")])
    assert gpu_check.main(["--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "ok"


def test_kernel_tests_refuse_to_run_on_cpu_when_cuda_is_required():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/kernels/test_kl_penalty.py"],
                          cwd=REPO, env={**NO_CUDA_ENV, "LIBRA_TEST_REQUIRE_CUDA": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert "LIBRA_TEST_REQUIRE_CUDA=1 but torch sees no CUDA device" in proc.stdout + proc.stderr


def test_peaks_and_roofline_for_h100_and_h200():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0 and peak_tflops("NVIDIA H200", "fp32") == 67.0
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0 and peak_hbm_gbps("NVIDIA H200") == 4800.0
    assert peak_hbm_gbps("NVIDIA H100 80GB HBM3") == 3350.0 and peak_tflops("Some GPU", "bf16") is None
    # Compute-bound (the Qwen LM head): the compute peak; memory-bound: intensity x bandwidth.
    assert roofline_tflops("NVIDIA H200", "bf16", flops=1e12, min_bytes=1e9) == 989.0
    assert roofline_tflops("NVIDIA H200", "bf16", flops=1e12, min_bytes=1e11) == pytest.approx(10 * 4.8)
    from bench_perf.kernels import PRESETS, min_bytes

    shape = PRESETS["qwen-h896"]
    intensity = 6 * shape.N * shape.H * shape.V / min_bytes(shape, "bf16", kl=False)
    assert intensity > peak_tflops("NVIDIA H200", "bf16") * 1e12 / (peak_hbm_gbps("NVIDIA H200") * 1e9)


def test_summary_digests_read_the_benchmarks_json():
    results = REPO / "bench_perf" / "results"
    rows = gpu_check.kernels_digest(results / "kernels-cpu.json")
    assert {r["competitor"] for r in rows} >= {"ours", "naive", "liger"}
    assert all(r["dtype"] and r["shape"].startswith("N=") for r in rows)
    assert any(r["median_ms"] for r in rows if r["competitor"] == "ours")
    assert gpu_check.kernels_digest(results / "missing.json") is None


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.real_model
@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.xdist_group("real-model")  # one SmolLM2 trainer at a time on a small machine
def test_dry_run_trains_a_judge_end_to_end(tmp_path):
    out = tmp_path / "check"
    limit = gpu_check.planned_seconds(gpu_check.dry_parts(gpu_check.PARTS))
    begin = time.monotonic()
    proc = subprocess.run(["make", "-s", "gpu-check", "DRY_RUN=1", f"OUT={out}", f"PY={sys.executable}"], cwd=REPO,
                          capture_output=True, text=True, timeout=limit + 60)
    print(f"\ngpu-check dry run: {time.monotonic() - begin:.0f} s wall")
    summary = json.loads((out / "summary.json").read_text())
    by_name = {p["name"]: p for p in summary["parts"]}
    assert list(by_name) == [p.name for p in gpu_check.PARTS]
    # Until the trainer knows rollout.max_staleness, the async run fails at config load, with that message, and
    # its evaluation is skipped; everything else must pass.
    asynchronous = by_name["judge-grpo-async"]
    unknown = asynchronous["status"] == "failed" and "rollout.max_staleness: unknown key" in asynchronous["stderr_tail"]
    assert summary["failed_parts"] == (["judge-grpo-async", "judge-eval-grpo-async"] if unknown else []), \
        proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.returncode == (2 if unknown else 0)  # make turns the script's exit 1 into 2
    if unknown:
        assert by_name["judge-eval-grpo-async"]["status"] == "skipped"
    assert summary["dry_run"] and summary["device"]["type"] == "cpu" and summary["budget_s"] is None
    tests = by_name["kernel-tests"]["tests"]
    assert tests["tests"] > 0 and tests["passed"] == tests["tests"]
    for name in ("kernel-bench-bf16", "kernel-bench-fp32"):
        assert {r["competitor"]: r["status"] for r in by_name[name]["results"]} == {"ours": "ok", "naive": "ok"}

    # The report's numbers are the ones in the files the commands wrote, read here on their own.
    work = out / "judge"
    report = json.loads((work / "report.json").read_text())
    md = (work / "report.md").read_text()
    assert report == summary["judge"] and report["dry_run"]
    stages = {r["part"]: r for r in report["stages"]}
    train, bench = _rows(work / "data" / "train.jsonl"), _rows(work / "data" / "bench.jsonl")
    assert train and bench and not {r["question"] for r in train} & {r["question"] for r in bench}
    data = stages["judge-data"]
    assert (data["train_rows"], data["bench_rows"], data["split"]["shared_problems"]) == (len(train), len(bench), 0)
    assert f"held-out bench {len(bench)} rows" in md
    assert len(_rows(work / "data" / "sft.jsonl")) == len(train)
    lines = {line.split(" | ")[1].strip("`"): line for line in md.splitlines() if line.startswith("| ") and "`" in line}
    fingerprints = {}
    for name in ("eval-base", "eval-sft", "eval-grpo-sync") + (() if unknown else ("eval-grpo-async",)):
        results = json.loads((work / name / "results.json").read_text())
        m, row = results["metrics"], stages[f"judge-{name}"]
        assert m["rows"] == len(bench) and results["resolved"]["bench"] == str(work / "data" / "bench.jsonl")
        assert (row["average"], row["average_ci95"], row["invalid_rate"]) == (
            m["average"], m["average_ci95"], m["invalid_rate"])
        tokens = sum(p["num_tokens"] for p in _rows(work / name / "predictions.jsonl"))
        assert row["generated_tokens"] == tokens > 0
        assert row["tokens_per_s"] == pytest.approx(tokens / results["timings"]["generate_s"])
        low, high = m["average_ci95"]
        assert f"{100 * m['average']:.1f} [{100 * low:.1f}, {100 * high:.1f}]" in lines[f"judge-{name}"]
        fingerprints[name] = results["resolved"]["model_fingerprint"]
    assert fingerprints["eval-base"] != fingerprints["eval-sft"]  # the SFT step changed the judge
    for name, key in (("sft", "loss"), ("grpo-sync", "reward")) + (() if unknown else (("grpo-async", "reward"),)):
        steps = _rows(work / name / "metrics.jsonl")
        row = stages[f"judge-{name}"]
        assert row["steps"] == len(steps) == 1 and (work / name / "final" / "model.safetensors").exists()
        assert row["tokens_per_s"] == pytest.approx(steps[0]["tokens_per_s"])
        assert f"{key} {steps[0][key]:.3f} -> {steps[-1][key]:.3f}" in lines[f"judge-{name}"]
        assert row["seconds_per_step"] == {k.removeprefix("time_"): v for k, v in steps[0].items()
                                           if k.startswith("time_")}
    assert _rows(work / "grpo-sync" / "metrics.jsonl")[0]["logprob_mismatch"] < 1e-3  # vLLM sampled the trainer's
