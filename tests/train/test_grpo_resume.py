"""GRPO killed with SIGKILL at a random rollout step and rerun equals the uninterrupted run bitwise (CPU,
transformers engine), and run.max_steps / run.save_every mean what they say when one rollout step holds
several optimizer steps."""
import json
import os
import random
import subprocess
import sys
import time

import pytest
import torch
from grpo_helpers import kill_after_checkpoint
from safetensors.torch import load_file

from libra.models.tiny import save_tiny


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo-resume")
    model = save_tiny(root / "tiny")
    with open(root / "rl.jsonl", "w") as f:
        for i in range(16):
            f.write(json.dumps({"question": f"Copy: {'ABCD'[i % 4]}", "answer": "ABCD"[i % 4], "task": "reasoning"})
                    + "\n")
    return root, model


def _args(root, model, out, *extra):
    return [f"model.path={model}", f"data.train={root / 'rl.jsonl'}", "data.task=reasoning",
            "data.prompts_per_step=4", "run.global_batch_size=2", "run.micro_batch_size=4", "rollout.engine=hf",
            "rollout.n=4", "rollout.max_tokens=8", "reward.l_exp=16", "reward.l_max=32", "optim.lr=1e-3",
            "optim.schedule=cosine", "optim.warmup_ratio=0", "run.tensorboard=false", f"run.out={root / out}", *extra]


def _cmd(root, model, out, *extra):
    return [sys.executable, "-m", "libra", "train", "grpo", *_args(root, model, out, *extra)]


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_kill_9_at_a_random_rollout_step_then_resume_is_bitwise(setup):
    root, model = setup
    extra = ("run.max_steps=8", "run.save_every=2", "loss.kl_coef=1e-3", "run.max_tokens_per_micro_batch=96")
    clean = _run(_cmd(root, model, "clean", *extra))
    assert clean.returncode == 0, clean.stderr[-3000:]
    kill_at = random.Random(time.time_ns()).choice([2, 4, 6])  # optimizer steps: rollout steps 1..3 of 4
    out = root / "killed"
    kill_after_checkpoint(_cmd(root, model, "killed", *extra), out, kill_at, dict(os.environ, OMP_NUM_THREADS="1"))
    resumed = _run(_cmd(root, model, "killed", *extra))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout + resumed.stderr
    a, b = load_file(root / "clean" / "final" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), f"killed after step {kill_at}"
    clean_m, resumed_m = _metrics(root / "clean"), _metrics(out)
    assert [m["step"] for m in resumed_m] == [m["step"] for m in clean_m] == [2, 4, 6, 8]
    for x, y in zip(clean_m, resumed_m):
        assert (x["reward"], x["lr"], x["grad_norm"]) == (y["reward"], y["lr"], y["grad_norm"])


@pytest.mark.slow
def test_max_steps_inside_a_rollout_step_and_the_save_interval(setup):
    """Two optimizer steps per rollout step (prompts_per_step 4, global batch 2): max_steps=5 stops after
    the first update of the third rollout step, on a schedule of 5 steps (the cosine reaches its end);
    save_every=3 saves at the first point at or after each multiple of 3 (step 4), then the final one."""
    root, model = setup
    run = _run(_cmd(root, model, "odd", "run.max_steps=5", "run.save_every=3", "run.keep_last=5"))
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = _metrics(root / "odd")
    assert [m["step"] for m in metrics] == [2, 4, 5]
    saved = sorted(p.name for p in (root / "odd" / "checkpoints").glob("step_*"))
    assert saved == ["step_00000004", "step_00000005"]
    lrs = [m["lr"] for m in metrics]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.2e-3  # one decay, never restarted
