"""The trainer on a real pretrained model (SmolLM2-135M-Instruct, Llama architecture, tied head, 49k vocab):
a 2-rank FSDP2 SFT run under torchrun equals the 1-rank run; a model exported from a checkpoint (a resumed
run that has nothing left to do) equals the in-memory export bitwise and serves in vLLM with the trainer's
log-probs; one GRPO step with vLLM rollouts and one DPO step end to end, each through the CLI."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = [pytest.mark.real_model, pytest.mark.xdist_group("real-model"), pytest.mark.slow]
BIN = Path(sys.executable).parent
SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def _run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _libra(*args):
    return _run([sys.executable, "-m", "libra", *args])


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("smollm2-train")
    rng = random.Random(0)
    with open(root / "sft.jsonl", "w") as sft, open(root / "rl.jsonl", "w") as rl, \
            open(root / "pairs.jsonl", "w") as pairs:
        for _ in range(8):
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            question = f"What is {a} + {b}?"
            sft.write(json.dumps({"messages": [
                {"role": "system", "content": "You are a careful calculator."},
                {"role": "user", "content": question},
                {"role": "assistant", "content": f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."}]}) + "\n")
            rl.write(json.dumps({"question": question, "answer": str(a + b), "task": "reasoning"}) + "\n")
            pairs.write(json.dumps({"prompt": question + SUFFIX, "chosen": f"\\boxed{{{a + b}}}",
                                    "rejected": f"\\boxed{{{a + b + 1}}}"}) + "\n")
    return root


def _sft_args(model, data, out, *extra):
    return ["train", "sft", f"model.path={model}", f"data.train={data / 'sft.jsonl'}", "data.max_seq_len=128",
            "run.global_batch_size=4", "run.micro_batch_size=1", "run.max_steps=2", "optim.lr=1e-5",
            "optim.warmup_ratio=0", "run.tensorboard=false", f"run.out={out}", *extra]


def test_two_ranks_equal_one_and_a_checkpoint_exports_to_vllm(converted, data, tmp_path):
    from libra.rollout import SamplingParams, VLLMEngine, logprob_mismatch, sequence_logprobs
    from libra.train.model import load_causal_lm

    one, two = tmp_path / "one", tmp_path / "two"
    _libra(*_sft_args(converted, data, one))
    _run([str(BIN / "torchrun"), "--nproc_per_node", "2", "-m", "libra", *_sft_args(converted, data, two)])
    losses_one, losses_two = [m["loss"] for m in _metrics(one)], [m["loss"] for m in _metrics(two)]
    assert len(losses_one) == 2 and losses_two == pytest.approx(losses_one, rel=1e-5)
    a, b = load_file(one / "final" / "model.safetensors"), load_file(two / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    moved = 0.0
    original = load_file(Path(converted) / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=name)
        moved = max(moved, float((a[name] - original[name]).abs().max()))
    assert moved > 1e-6  # the step changed the weights

    # checkpoint -> export: the same command again resumes from step 2 with nothing left and exports
    # the weights it loaded from the checkpoint
    in_memory = dict(a)
    (one / "final" / "model.safetensors").unlink()
    resumed = _libra(*_sft_args(converted, data, one))
    assert "resuming" in resumed.stdout + resumed.stderr
    exported = load_file(one / "final" / "model.safetensors")
    assert all(torch.equal(exported[k], in_memory[k]) for k in in_memory)

    engine = VLLMEngine(str(one / "final"), max_model_len=1024)
    try:
        chats = [[{"role": "user", "content": "What is 31 + 45?"}], [{"role": "user", "content": "Say hello."}]]
        gens = engine.generate(chats, SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=5, logprobs=True))
    finally:
        engine.close()
    lm = load_causal_lm(one / "final").eval()
    pairs = [(g.prompt_token_ids, s) for g in gens for s in g.samples]
    trainer = sequence_logprobs(lm, [p for p, _ in pairs], [s.token_ids for _, s in pairs])
    gap = logprob_mismatch([s.logprobs for _, s in pairs], trainer)
    assert gap["tokens"] >= 30 and gap["max_abs"] < 1e-3, gap


@pytest.mark.vllm
def test_one_grpo_step_with_vllm_rollouts(converted, data, tmp_path):
    out = tmp_path / "grpo"
    _libra("train", "grpo", f"model.path={converted}", f"data.train={data / 'rl.jsonl'}", "data.task=reasoning",
           "data.prompts_per_step=2", "run.global_batch_size=2", "run.micro_batch_size=4",
           "run.max_tokens_per_micro_batch=1024", "rollout.n=4", "rollout.max_tokens=48",
           "rollout.max_model_len=1024", "reward.l_exp=32", "reward.l_max=48", "run.max_steps=1", "optim.lr=1e-6",
           "run.tensorboard=false", f"run.out={out}")
    (step,) = _metrics(out)
    assert step["step"] == 1 and step["skipped"] == 0 and step["grad_norm"] > 0
    assert step["response_length"] > 1 and 0 <= step["accuracy"] <= 1
    assert step["logprob_mismatch"] < 1e-3  # vLLM sampled from the trainer's distribution
    assert (out / "final" / "model.safetensors").exists()


def test_one_dpo_step(converted, data, tmp_path):
    out = tmp_path / "dpo"
    _libra("train", "dpo", f"model.path={converted}", f"data.train={data / 'pairs.jsonl'}", "run.max_steps=1",
           "run.global_batch_size=8", "run.micro_batch_size=4", "optim.lr=1e-6", "optim.warmup_ratio=0",
           "run.tensorboard=false", f"run.out={out}")
    (step,) = _metrics(out)
    assert step["margin"] == pytest.approx(0.0, abs=1e-5)  # the policy starts as its reference
    assert step["loss"] == pytest.approx(0.6931, abs=1e-3) and step["grad_norm"] > 0
    assert len(json.loads((out / "reference_logps.json").read_text())["logps"]) == 8
