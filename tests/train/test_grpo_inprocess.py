"""GRPO in this process on a tiny model with the transformers engine: the held-out evaluation during the
run, the uniform-groups metric, batches and reference model built as configured, the engine factory, the
answer checks that failed in a step, and the on-policy shortcut against the full path (old log-probs from a
separate pass)."""
import json
from types import SimpleNamespace

import pytest
import torch
from grpo_helpers import write_judging_bench

from libra.config import load_config
from libra.models.tiny import save_tiny
from libra.rollout import HFEngine, SamplingParams
from libra.rollout.types import Generation, Sample
from libra.train import session as session_mod
from libra.train.grpo import (
    GRPOConfig,
    HeldOutEval,
    Rollout,
    assign_advantages,
    compute_logprobs,
    train_grpo,
    uniform_groups,
    update,
)
from libra.train.session import TrainSession


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo")
    model = save_tiny(root / "tiny")
    with open(root / "rl.jsonl", "w") as f:
        for i in range(8):
            f.write(json.dumps({"question": f"Copy the letter: {'ABCD'[i % 4]}", "answer": "A", "task": "reasoning"})
                    + "\n")
    write_judging_bench(root)
    return root, model


def _cfg(root, model, out, *extra):
    return load_config(GRPOConfig, None, [
        f"model.path={model}", f"data.train={root / 'rl.jsonl'}", "data.task=reasoning", "data.prompts_per_step=4",
        "run.global_batch_size=4", "run.micro_batch_size=8", "rollout.engine=hf", "rollout.n=4",
        "rollout.max_tokens=6", "reward.l_exp=16", "reward.l_max=32", "run.tensorboard=false", "run.export=false",
        f"run.out={out}", *extra])


def test_held_out_eval_uniform_groups_and_the_trainer_skeleton(setup, tmp_path, monkeypatch):
    root, model = setup
    out = tmp_path / "run"
    cfg = _cfg(root, model, out, "run.max_steps=3", "data.epochs=2", f"eval.bench={root / 'bench.jsonl'}",
               f"eval.template={root / 'judge.txt'}", "eval.every=2", "eval.max_tokens=5", "eval.n=2",
               "eval.temperature=0.6", "model.attn_implementation=flash_attention_2", "model.mixed_precision=true",
               "loss.kl_coef=1e-3")
    sharded, attn, started = [], [], []
    real_shard, real_batch = session_mod.shard, session_mod.batch_inputs

    def spy_shard(model, world, *, mixed_precision):  # record, then shard in fp32 (no bf16 compute on CPU)
        sharded.append(mixed_precision)
        return real_shard(model, world, mixed_precision=False)

    def spy_batch(rows, pad, attn_implementation="sdpa"):
        attn.append(attn_implementation)
        return real_batch(rows, pad, attn_implementation)

    def factory(cfg_, seed):
        started.append(seed)
        return HFEngine(cfg_.model.path)

    monkeypatch.setattr(session_mod, "shard", spy_shard)
    monkeypatch.setattr(session_mod, "batch_inputs", spy_batch)
    # flash-attention kernels do not exist on CPU: keep sdpa inside the model, the batches are what is checked
    monkeypatch.setattr("transformers.PreTrainedModel.set_attn_implementation", lambda self, impl: None)
    train_grpo(cfg, engine_factory=factory)

    assert started == [cfg.run.seed]  # the factory started the one engine
    assert sharded == [True, True]  # policy and reference both honour model.mixed_precision
    assert attn and set(attn) == {"flash_attention_2"}  # every GRPO batch (log-probs and updates)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1, 2, 3]
    evaluated = [m["step"] for m in lines if "eval_accuracy" in m]
    assert evaluated == [0, 2, 3]  # before any update, every 2 rollout steps, at the end
    for m in lines[1:]:
        assert 0.0 <= m["uniform_groups"] <= 1.0 and 0.0 <= m["kept_fraction"] <= 1.0
    for step in evaluated:
        folder = out / "evals" / f"step_{step:08d}"
        results = json.loads((folder / "results.json").read_text())
        predictions = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
        sampling = results["resolved"]["sampling"]
        assert sampling["max_tokens"] == 5 and sampling["n"] == 2 and sampling["temperature"] == 0.6
        assert len(predictions) == 4 * 2 and sorted(p["sample"] for p in predictions) == [0] * 4 + [1] * 4
        m = next(x for x in lines if x["step"] == step)
        assert m["eval_accuracy"] == results["metrics"]["accuracy"] and 0 <= m["eval_invalid"] <= 1


class HostileFirstRollout(HFEngine):
    """The tiny policy's rollouts with other texts: the first one's answer check times out (one big-integer
    power against the gold 5), the rest are the gold answer (settled without the symbolic worker), so each
    rollout step has exactly one failed check."""

    def generate(self, prompts, params, **kwargs):
        gens = super().generate(prompts, params, **kwargs)
        for i, sample in enumerate(s for g in gens for s in g.samples):
            sample.text = r"\boxed{9^{9^{9^{9^{9}}}}}" if i == 0 else r"\boxed{5}"
        return gens


def test_failed_answer_checks_are_logged_per_step(setup, tmp_path):
    root, model = setup
    out, train = tmp_path / "run", tmp_path / "five.jsonl"
    train.write_text("".join(json.dumps({"question": f"{i} + {5 - i}?", "answer": "5"}) + "\n" for i in range(4)))
    train_grpo(_cfg(root, model, out, f"data.train={train}", "run.max_steps=1", "loss.kl_coef=0"),
               engine_factory=lambda cfg_, seed: HostileFirstRollout(cfg_.model.path))
    (metrics,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics["check_failures"] == 1 and metrics["accuracy"] == 15 / 16  # a failed check is not correct


class ScoreTwo:
    """An engine whose every judgment is [[score=2]]."""

    def generate(self, prompts, params, *, progress=False):
        return [Generation([1], [Sample([2], "[[score=2]]", "stop") for _ in range(params.n)]) for _ in prompts]


@pytest.mark.parametrize("threshold, pred", [(2, True), (3, False)])
def test_held_out_eval_reads_verdicts_with_the_reward_threshold(setup, tmp_path, threshold, pred):
    """A score of 2 is "correct" for the reward at reward.threshold=2 and "wrong" at 3: the held-out
    evaluation must read it the same way (it used to apply the default threshold, 2, whatever the run said)."""
    root, model = setup
    cfg = _cfg(root, model, tmp_path / "run", f"eval.bench={root / 'bench.jsonl'}", "eval.every=1",
               f"reward.threshold={threshold}")
    held = HeldOutEval(SimpleNamespace(world=SimpleNamespace(is_main=True), step=0), cfg, updates_per_step=1)
    metrics = held(ScoreTwo())
    folder = tmp_path / "run" / "evals" / "step_00000000"
    predictions = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert [p["pred"] for p in predictions] == [pred] * 4
    assert json.loads((folder / "results.json").read_text())["resolved"]["threshold"] == threshold
    assert metrics["eval_accuracy"] == 0.5 and metrics["eval_invalid"] == 0


def test_uniform_groups_counts_groups_whose_rewards_all_agree():
    rollouts = [Rollout(g, [1], [2], [-1.0], r, r > 0, False) for g, rs in enumerate([(1, 1), (0, 1), (0, 0)])
                for r in rs]
    rewards = torch.tensor([r.reward for r in rollouts])
    assert uniform_groups(rewards, 2).tolist() == [True, False, True]


def test_on_policy_shortcut_equals_the_full_path(setup, tmp_path):
    """The on-policy update takes the old log-probs from its own pass; the full path computes them in a
    separate pass first. At the same weights both must give the same loss gradient, the separate pass's
    log-probs must equal the update pass's, and the full path's ppo_kl must be 0 (the ratio is 1)."""
    root, model = setup
    cfg = _cfg(root, model, tmp_path / "s", "optim.lr=0", "optim.warmup_ratio=0", "loss.kl_coef=0",
               "rollout.temperature=0.7")
    engine = HFEngine(str(model))
    with TrainSession(cfg, total_steps=4, desc="test") as session:
        prompts = [[{"role": "user", "content": f"Say {c}"}] for c in "AB"]
        gens = engine.generate(prompts, SamplingParams(n=4, temperature=0.7, max_tokens=6, seed=1, logprobs=True))
        rollouts = [Rollout(g, list(gen.prompt_token_ids), list(s.token_ids), list(s.logprobs), float(k % 2),
                            k % 2 == 1, False) for g, gen in enumerate(gens) for k, s in enumerate(gen.samples)]
        assign_advantages(rollouts, 4, dynamic=False)
        session.model.eval()
        compute_logprobs(session, session.model, rollouts, "old_logp", 0.7)
        separate = [r.old_logp.clone() for r in rollouts]
        engine_gap = max(float((torch.tensor(r.engine_logp) - r.old_logp).abs().max()) for r in rollouts)
        assert engine_gap < 1e-3  # the engine sampled from the trainer's distribution
        session.model.train()
        full = update(session, cfg, rollouts, on_policy=False)
        assert abs(full["ppo_kl"]) < 1e-6 and full["clipfrac_high"] == 0 == full["clipfrac_low"]
        shortcut = update(session, cfg, rollouts, on_policy=True)  # lr 0: the weights did not move
        assert shortcut["grad_norm"] == pytest.approx(full["grad_norm"], rel=1e-5) and full["grad_norm"] > 0
        for r, before in zip(rollouts, separate):
            torch.testing.assert_close(r.old_logp, before, atol=1e-5, rtol=0)
