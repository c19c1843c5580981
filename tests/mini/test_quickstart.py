"""``libra quickstart --fast``: every Libra-Mini stage runs through the real CLI, trainer, kernels and vLLM,
and writes what it promises; a rerun resumes (all stages skipped) and reproduces the report."""
import json
import os
import subprocess
import sys

import pytest

from libra.mini.pipeline import VARIANTS

STAGES = ("data", "model", "base-sft", "judging-data", "direct-sft", "thinking-sft", "rl-zero", "sft-rl", "eval")


def _quickstart(out):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-m", "libra", "quickstart", "--fast", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.vllm
def test_fast_quickstart_runs_every_stage(tmp_path):
    out = tmp_path / "mini"
    log = _quickstart(out)
    assert all((out / stage / "done").is_file() for stage in STAGES)
    bench = [json.loads(line) for line in (out / "data" / "bench.jsonl").read_text().splitlines()]
    train = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    assert {r["problem_id"] for r in bench}.isdisjoint({r["problem_id"] for r in train})  # held out by problem
    assert sum(r["label"] for r in bench) * 2 == len(bench)  # balanced
    results = json.loads((out / "results.json").read_text())
    assert list(results["variants"]) == list(VARIANTS)
    for name, metrics in results["variants"].items():
        lines = (out / "eval" / name / "predictions.jsonl").read_text().splitlines()
        predictions = [json.loads(line) for line in lines]
        assert metrics["n"] == len(bench) == len(predictions)
        right = sum(p["pred"] is not None and p["pred"] == p["label"] for p in predictions)
        assert metrics["accuracy"] == pytest.approx(right / len(predictions))
        assert 0 <= metrics["invalid_rate"] <= 1
    stats = results["rejection_sampling"]
    assert stats["kept"] > 0 and stats["invalid"] == 0  # the teacher always gives a verdict
    for stage in ("base-sft", "direct-sft", "thinking-sft", "rl-zero", "sft-rl"):
        assert (out / stage / "run" / "final" / "model.safetensors").is_file()
        assert (out / stage / "run" / "checkpoints" / "latest").is_file()
    assert len(results["rl_curves"]["sft-rl"]) == 2 and results["rl_curves"]["rl-zero"]
    assert all(r["logprob_mismatch"] < 1e-3 for r in
               map(json.loads, (out / "sft-rl" / "run" / "metrics.jsonl").read_text().splitlines()))
    for name in ("report.md", "accuracy.png", "rl_curves.png"):
        assert (out / name).stat().st_size > 0
    assert "wall time" in log
    report = (out / "report.md").read_text()
    rerun = _quickstart(out)
    assert rerun.count("done earlier, skipped") == len(STAGES)
    assert json.loads((out / "results.json").read_text())["variants"] == results["variants"]
    assert (out / "report.md").read_text().split("Wall time")[0] == report.split("Wall time")[0]
