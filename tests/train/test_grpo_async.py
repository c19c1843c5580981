"""Asynchronous GRPO (``rollout.max_staleness``) on a tiny model with the transformers engine, CPU: the
engine's schedule, runs deterministic for their seed whatever the timing, the first step equal to the
synchronous loop's (the same weights sample it), staleness as scheduled, evaluations of the versions the
schedule names, and kill -9 then resume equal to the uninterrupted run bitwise."""
import json
import os
import random
import subprocess
import sys
import time

import pytest
import torch
from grpo_helpers import kill_after_checkpoint, write_judging_bench
from safetensors.torch import load_file

from libra.config import load_config
from libra.models.tiny import point_eos_along_the_mean_state, save_tiny
from libra.train.grpo import GRPOConfig, schedule, train_grpo


def test_the_schedule_names_the_version_that_samples_each_step():
    # synchronous order, as K = 0 would run it: each step sampled by the weights learned just before
    assert schedule(0, 0, 3, 0, set()) == [("sample", 0), ("push", 1), ("sample", 1), ("push", 2), ("sample", 2)]
    # one step off: steps 0 and 1 by version 0, step r by version r - 1
    assert schedule(0, 0, 4, 1, set()) == [("sample", 0), ("sample", 1), ("push", 1), ("sample", 2), ("push", 2),
                                           ("sample", 3)]
    # two steps off with evaluations: the final version, which no step needs, is pushed at the end
    assert schedule(0, 0, 4, 2, {0, 2, 4}) == [("eval", 0), ("sample", 0), ("sample", 1), ("sample", 2), ("push", 1),
                                               ("sample", 3), ("push", 2), ("eval", 2), ("push", 4), ("eval", 4)]
    # resumed after 2 steps with step 2 already sampled (by version 1): the engine starts on version 2
    assert schedule(2, 3, 5, 1, {2, 4, 5}) == [("eval", 2), ("sample", 3), ("push", 3), ("sample", 4), ("push", 4),
                                               ("eval", 4), ("push", 5), ("eval", 5)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model whose EOS comes at varied lengths, so the length penalty gives groups unequal rewards
    (and the updates real gradients); a held-out bench for the evaluations."""
    root = tmp_path_factory.mktemp("grpo-async")
    model = save_tiny(root / "tiny")
    point_eos_along_the_mean_state(str(model), 4.0, 0)
    with open(root / "rl.jsonl", "w") as f:
        for i in range(16):
            f.write(json.dumps({"question": f"Copy: {'ABCD'[i % 4]}", "answer": "ABCD"[i % 4], "task": "reasoning"})
                    + "\n")
    write_judging_bench(root)
    return root, model


def _args(root, model, out, *extra):
    return [f"model.path={model}", f"data.train={root / 'rl.jsonl'}", "data.task=reasoning",
            "data.prompts_per_step=4", "run.global_batch_size=2", "run.micro_batch_size=4", "rollout.engine=hf",
            "rollout.n=4", "rollout.max_tokens=8", "reward.l_exp=2", "reward.l_max=10", "optim.lr=1e-2",
            "optim.warmup_ratio=0", "run.tensorboard=false", f"run.out={out}", *extra]


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _run(root, model, out, *extra):
    train_grpo(load_config(GRPOConfig, None, _args(root, model, out, "run.max_steps=8", *extra)))
    return load_file(out / "final" / "model.safetensors"), _metrics(out)


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_async_runs_are_deterministic_and_start_where_the_synchronous_one_does(setup, tmp_path):
    root, model = setup
    evals = (f"eval.bench={root / 'bench.jsonl'}", f"eval.template={root / 'judge.txt'}", "eval.every=2",
             "eval.max_tokens=5")
    sync_w, sync_m = _run(root, model, tmp_path / "k0", *evals)
    k1_w, k1_m = _run(root, model, tmp_path / "k1", "rollout.max_staleness=1", *evals)
    k1b_w, k1b_m = _run(root, model, tmp_path / "k1b", "rollout.max_staleness=1", *evals)
    k2_w, k2_m = _run(root, model, tmp_path / "k2", "rollout.max_staleness=2")
    k2b_w, _ = _run(root, model, tmp_path / "k2b", "rollout.max_staleness=2")

    steps = [m for m in k1_m if "reward" in m]
    assert [m["step"] for m in steps] == [2, 4, 6, 8]
    assert [m["staleness"] for m in steps] == [0, 1, 1, 1]
    assert [m["staleness"] for m in k2_m if "reward" in m] == [0, 1, 2, 2]
    assert all(m["trainer_idle"] >= 0 and m["engine_idle"] >= 0 for m in steps)
    assert any(m["grad_norm"] > 0 for m in steps), "no learning signal: the test would compare untrained weights"

    assert _equal(k1_w, k1b_w) and _equal(k2_w, k2b_w)
    assert [(m["reward"], m["grad_norm"]) for m in steps] == [(m["reward"], m["grad_norm"]) for m in k1b_m
                                                              if "reward" in m]
    assert not _equal(sync_w, k1_w) and not _equal(k1_w, k2_w)  # staleness changes what is learned
    first_sync = next(m for m in sync_m if "reward" in m)
    assert (steps[0]["reward"], steps[0]["grad_norm"]) == (first_sync["reward"], first_sync["grad_norm"])

    # evaluations of versions 0, 2 and 4 (optimizer steps 0, 4, 8); version 0 is the untrained model in both
    evaluated = sorted(p.name for p in (tmp_path / "k1" / "evals").glob("step_*"))
    assert evaluated == ["step_00000000", "step_00000004", "step_00000008"]
    assert sorted(m["step"] for m in k1_m if "eval_accuracy" in m) == [0, 4, 8]

    def predictions(run, step):
        return (tmp_path / run / "evals" / f"step_{step:08d}" / "predictions.jsonl").read_text()

    assert predictions("k1", 0) == predictions("k0", 0)


def _cmd(root, model, out, *extra):
    return [sys.executable, "-m", "libra", "train", "grpo", *_args(root, model, out, *extra)]


@pytest.mark.slow
def test_kill_9_then_resume_is_bitwise_with_rollouts_sampled_ahead(setup):
    root, model = setup
    extra = ("rollout.max_staleness=1", "run.max_steps=8", "run.save_every=2", "loss.kl_coef=1e-3")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    clean = subprocess.run(_cmd(root, model, root / "clean", *extra), capture_output=True, text=True, env=env,
                           timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]
    kill_at = random.Random(time.time_ns()).choice([2, 4, 6])
    out = root / "killed"
    kill_after_checkpoint(_cmd(root, model, out, *extra), out, kill_at, env)
    saved = out / "checkpoints" / f"step_{kill_at:08d}" / "state_rank0.pt"
    ahead = torch.load(saved, weights_only=True)["ahead"]
    assert [s["index"] for s in ahead] == [kill_at // 2]  # the next step, sampled by the version before
    resumed = subprocess.run(_cmd(root, model, out, *extra), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout + resumed.stderr
    a, b = load_file(root / "clean" / "final" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert _equal(a, b), f"killed after step {kill_at}"
    clean_m, resumed_m = _metrics(root / "clean"), _metrics(out)
    assert [m["step"] for m in resumed_m] == [m["step"] for m in clean_m] == [2, 4, 6, 8]
    for x, y in zip(clean_m, resumed_m):
        assert (x["reward"], x["lr"], x["grad_norm"], x["staleness"]) == (y["reward"], y["lr"], y["grad_norm"],
                                                                          y["staleness"])
