"""GRPO and DPO end to end on CPU with real components: the FSDP2 trainer, the fused kernels and the
vLLM engine holding the trainer's weights.

The task is tiny but verifiable: after a short SFT teaches the answer format (\\boxed{letter}, letters
drawn at random), the reward pays only for the letter A. GRPO must raise the mean reward; DPO on
(A, other letter) pairs must widen the chosen-rejected margin.
"""
import json
import os
import random
import subprocess
import sys

import pytest

from libra.models.tiny import save_tiny

LETTERS = "ABCD"


def _cli(*args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-m", "libra", *args], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A tiny model that answers in the format, with a random letter."""
    root = tmp_path_factory.mktemp("rl")
    rng = random.Random(0)
    suffix = "\nPlease reason step by step, and put your final answer within \\boxed{}."
    sft, rl, dp = (open(root / name, "w") for name in ("sft.jsonl", "rl.jsonl", "pairs.jsonl"))
    with sft, rl, dp:
        for _ in range(128):
            shown = rng.choice(LETTERS)
            question = f"Copy the letter: {shown}"
            sft.write(json.dumps({"prompt": question + suffix, "response": f"\\boxed{{{rng.choice(LETTERS)}}}"}) + "\n")
            rl.write(json.dumps({"question": question, "answer": "A", "task": "reasoning"}) + "\n")
            dp.write(json.dumps({"prompt": question + suffix, "chosen": "\\boxed{A}",
                                 "rejected": f"\\boxed{{{rng.choice(LETTERS[1:])}}}"}) + "\n")
    _cli("train", "sft", f"model.path={save_tiny(root / 'tiny')}", f"data.train={root / 'sft.jsonl'}",
         "data.max_seq_len=64", "data.epochs=6", "run.global_batch_size=16", "run.micro_batch_size=16",
         "optim.lr=3e-3", "optim.min_lr=3e-4", f"run.out={root / 'sft'}", "run.tensorboard=false")
    return root


@pytest.mark.slow
@pytest.mark.vllm
def test_grpo_raises_reward_with_vllm_rollouts(warm):
    out = warm / "grpo"
    _cli("train", "grpo", f"model.path={warm / 'sft' / 'final'}", f"data.train={warm / 'rl.jsonl'}",
         "data.task=reasoning", "data.prompts_per_step=16", "data.epochs=2", "run.global_batch_size=8",
         "run.micro_batch_size=32", "rollout.engine=vllm", "rollout.n=8", "rollout.max_tokens=12",
         "reward.l_exp=16", "reward.l_max=32", "optim.lr=2e-4", "optim.warmup_ratio=0", "run.max_steps=24",
         "run.save_every=8", f"run.out={out}")
    steps = _metrics(out)
    assert [s["step"] for s in steps] == list(range(2, 25, 2))  # 2 optimizer steps per rollout step
    first = sum(s["reward"] for s in steps[:3]) / 3
    last = sum(s["reward"] for s in steps[-3:]) / 3
    assert last > first + 0.15, [round(s["reward"], 3) for s in steps]
    # the engine samples from the trainer's current weights: synced after every update
    assert max(s["logprob_mismatch"] for s in steps) < 1e-3
    assert all(s["kl"] >= 0 and s["skipped"] == 0 for s in steps) and steps[-1]["kl"] > 0
    assert (out / "final" / "model.safetensors").is_file() and (out / "checkpoints" / "latest").is_file()
    assert (out / "tensorboard").is_dir() and (out / "config.yaml").is_file()


@pytest.mark.slow
def test_grpo_dynamic_sampling_survives_a_task_too_hard(warm):
    """No rollout can earn a reward (gold answer Z): every group is dropped, refills run out, and the
    run still completes, with the steps logged and nothing written into the weights."""
    hard = warm / "hard.jsonl"
    hard.write_text("".join(json.dumps({"question": f"Copy the letter: {c}", "answer": "Z", "task": "reasoning"}) + "\n"
                            for c in LETTERS * 4))
    out = warm / "grpo-hard"
    _cli("train", "grpo", f"model.path={warm / 'sft' / 'final'}", f"data.train={hard}", "data.task=reasoning",
         "data.prompts_per_step=4", "run.global_batch_size=4", "rollout.engine=hf", "rollout.n=4",
         "rollout.max_tokens=8", "rollout.dynamic_sampling=true", "rollout.max_refill_rounds=2",
         "reward.l_exp=16", "reward.l_max=32", "loss.kl_coef=0", "run.max_steps=2", f"run.out={out}",
         "run.tensorboard=false")
    steps = _metrics(out)
    assert len(steps) == 2 and all(s["kept_fraction"] == 0 and s["accuracy"] == 0 for s in steps)
    assert all(s["uniform_groups"] == 1.0 for s in steps)  # every group's rewards agree: all dropped


@pytest.mark.slow
def test_dpo_widens_the_margin(warm):
    out = warm / "dpo"
    _cli("train", "dpo", f"model.path={warm / 'sft' / 'final'}", f"data.train={warm / 'pairs.jsonl'}",
         "data.epochs=2", "run.global_batch_size=32", "run.micro_batch_size=16", "beta=0.1", "optim.lr=5e-4",
         "optim.warmup_ratio=0", f"run.out={out}", "run.tensorboard=false")
    steps = _metrics(out)
    assert len(steps) == 8 and steps[0]["margin"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    margins = [s["margin"] for s in steps]
    assert margins[-1] > 0.1 and margins[-1] > margins[len(margins) // 2] > margins[1] > 0, margins
    assert steps[-1]["pair_accuracy"] >= 0.75
    assert len(json.loads((out / "reference_logps.json").read_text())["logps"]) == 128


@pytest.mark.slow
def test_grpo_two_ranks_each_with_an_engine(warm):
    """Two ranks under torchrun, each generating its share of the prompts with its own engine; the step
    statistics are global (all 8 prompts x 4 rollouts counted once)."""
    out = warm / "grpo-2"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", "2", "-m", "libra", "train",
         "grpo", f"model.path={warm / 'sft' / 'final'}", f"data.train={warm / 'rl.jsonl'}", "data.task=reasoning",
         "data.prompts_per_step=8", "run.global_batch_size=8", "rollout.engine=hf", "rollout.n=4",
         "rollout.max_tokens=12", "reward.l_exp=16", "reward.l_max=32", "run.max_steps=2", f"run.out={out}",
         "run.tensorboard=false"], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    steps = _metrics(out)
    assert [s["step"] for s in steps] == [1, 2]
    assert all(s["logprob_mismatch"] < 1e-3 and 0 <= s["accuracy"] <= 1 for s in steps)
    # The reference model (k3 KL 1e-3 by default) is built like the policy on both ranks: before the first
    # update the two are the same model, so the KL is 0 (a reference loaded or sharded differently is not).
    # (The on-policy ppo_kl is 0 by construction; tests/train/test_grpo_inprocess.py checks that shortcut.)
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert (out / "final" / "model.safetensors").is_file()
