"""The SFT trainer end to end on CPU: 2 ranks under torchrun equal 1 rank, kill -9 then resume equals an
uninterrupted run bitwise, non-finite gradients never reach the weights, bad config is a clear error."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from libra.cli import main
from libra.config import load_config
from libra.models.tiny import save_tiny
from libra.train.session import TrainSession
from libra.train.sft import SFTConfig

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    model = save_tiny(root / "tiny")
    rng = random.Random(0)
    with open(root / "rows.jsonl", "w") as f:
        for _ in range(48):
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            row = {"prompt": f"What is {a}+{b}?", "response": f"{a}+{b}={a + b}. \\boxed{{{a + b}}}"}
            f.write(json.dumps(row) + "\n")
    return root, model


def _args(root: Path, model: Path, out: str, *extra: str) -> list[str]:
    return [f"model.path={model}", f"data.train={root / 'rows.jsonl'}", "data.max_seq_len=128", "data.epochs=1",
            "run.global_batch_size=12", "run.micro_batch_size=2", f"run.out={root / out}", "optim.lr=1e-3",
            "run.tensorboard=false", *extra]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, **kw)


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict:
    return load_file(run / "final" / "model.safetensors")


@pytest.mark.slow
def test_two_ranks_match_one_rank(setup):
    root, model = setup
    one = _run([sys.executable, "-m", "libra", "train", "sft", *_args(root, model, "one")])
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run([str(BIN / "torchrun"), "--nproc_per_node", "2", "-m", "libra", "train", "sft",
                *_args(root, model, "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    assert len(_losses(root / "one")) == 4
    assert _losses(root / "two") == pytest.approx(_losses(root / "one"), rel=1e-5)
    a, b = _weights(root / "one"), _weights(root / "two")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4)
    assert _losses(root / "one")[-1] < _losses(root / "one")[0]


@pytest.mark.slow
def test_kill_then_resume_is_bitwise(setup):
    root, model = setup
    clean = _run([sys.executable, "-m", "libra", "train", "sft", *_args(root, model, "clean", "run.save_every=1")])
    assert clean.returncode == 0, clean.stderr[-3000:]
    kill_after = random.Random(time.time_ns()).randint(1, 3)
    out = root / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "libra", "train", "sft",
                             *_args(root, model, "killed", "run.save_every=1")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    log = out / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final").exists(), "the run finished before it could be killed"
    resumed = _run([sys.executable, "-m", "libra", "train", "sft", *_args(root, model, "killed", "run.save_every=1")])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _weights(root / "clean"), _weights(out)
    assert all(torch.equal(a[name], b[name]) for name in a), f"killed after step {kill_after}"
    assert _losses(out) == _losses(root / "clean")  # the log was cut back to the checkpoint, no duplicates
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_00000003", "step_00000004"]


def test_nonfinite_gradients_skip_the_step(setup, tmp_path):
    root, model = setup
    cfg = load_config(SFTConfig, None, _args(root, model, "unused", f"run.out={tmp_path}"))
    session = TrainSession(cfg, total_steps=2, desc="test")
    try:
        before = {k: v.detach().clone() for k, v in session.model.state_dict().items()}
        for p in session.model.parameters():
            p.grad = torch.zeros_like(p)
        next(session.model.parameters()).grad.fill_(float("nan"))
        stats = session.optimizer_step()
        assert stats["skipped"] == 1 and session.step == 1
        after = session.model.state_dict()
        assert all(torch.equal(before[k].full_tensor(), after[k].full_tensor()) for k in before)
        for p in session.model.parameters():
            p.grad = torch.ones_like(p)
        assert session.optimizer_step()["skipped"] == 0
        assert not torch.equal(before["lm_head.weight"].full_tensor(),
                               session.model.state_dict()["lm_head.weight"].full_tensor())
    finally:
        session.logger.close()
        session.close()


def test_bad_config_is_a_clear_error(setup, capsys):
    root, model = setup
    assert main(["train", "sft", *_args(root, model, "bad"), "optim.lrr=1"]) == 2
    assert "command line: optim.lrr: unknown key" in capsys.readouterr().err
    assert main(["train", "sft", *_args(root, model, "bad"), "model.path=/nonexistent/model"]) == 2
    assert "/nonexistent/model" in capsys.readouterr().err


@pytest.mark.slow
def test_activation_checkpointing_changes_memory_not_results(setup):
    root, model = setup
    for name, extra in (("plain", []), ("ckpt", ["model.activation_checkpointing=true"])):
        args = _args(root, model, name, "run.max_steps=2", *extra)
        done = _run([sys.executable, "-m", "libra", "train", "sft", *args])
        assert done.returncode == 0, done.stderr[-3000:]
    assert _losses(root / "ckpt") == pytest.approx(_losses(root / "plain"), rel=1e-6)
    a, b = _weights(root / "plain"), _weights(root / "ckpt")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_resume_at_another_world_size(setup):
    """A run saved by 2 ranks continues on 1: the distributed checkpoint is resharded on load, and the
    data position and schedule carry over (the log goes on from the saved step)."""
    root, model = setup
    two = _run([str(BIN / "torchrun"), "--nproc_per_node", "2", "-m", "libra", "train", "sft",
                *_args(root, model, "reshard", "run.save_every=2")])
    assert two.returncode == 0, two.stderr[-3000:]
    one = _run([sys.executable, "-m", "libra", "train", "sft", *_args(root, model, "reshard", "data.epochs=2")])
    assert one.returncode == 0, one.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (root / "reshard" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    assert json.loads((root / "reshard" / "checkpoints" / "step_00000008" / "trainer.json").read_text())[
        "world_size"] == 1
