"""A judge as the GRPO reward: each reasoning rollout judged by its own engine with the pointwise template
(question and response only, never the gold answer), batched, cached, failures counted, mixed with the rule
reward by ``reward.judge_weight``; and a GRPO run whose reward comes from a real judge engine."""
import hashlib
import json

import pytest

from libra.config import load_config
from libra.judge import render
from libra.models.tiny import save_tiny
from libra.rewards import length_penalty
from libra.rollout import HFEngine
from libra.rollout.types import Generation, Sample
from libra.train.grpo import GRPOConfig, generate_and_score, train_grpo
from libra.train.judge_reward import JudgeReward
from libra.train.rl_tasks import load_rl_items


class RecordingJudge:
    """A real judge engine (``inner``) whose prompts are recorded; ``verdict`` optionally replaces its text by
    a rule of the response, so that a test knows which verdict each rollout must get."""

    def __init__(self, inner, verdict=None):
        self.inner, self.verdict, self.prompts, self.calls = inner, verdict, [], 0
        self.tokenizer = inner.tokenizer

    def generate(self, prompts, params, **kw):
        self.calls += 1
        self.prompts += [p[0]["content"] for p in prompts]
        gens = self.inner.generate(prompts, params, **kw)
        if self.verdict is None:
            return gens
        return [Generation(g.prompt_token_ids, [Sample([1], self.verdict(p[0]["content"]), "stop")])
                for g, p in zip(gens, prompts)]

    def close(self):
        self.inner.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge-reward")
    policy, judge = save_tiny(root / "policy"), save_tiny(root / "judge")
    with open(root / "rl.jsonl", "w") as f:
        for i in range(8):
            f.write(json.dumps({"question": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1),
                                "task": "reasoning"}) + "\n")
    return root, policy, judge


def _cfg(root, policy, judge, out, *extra):
    return load_config(GRPOConfig, None, [
        f"model.path={policy}", f"data.train={root / 'rl.jsonl'}", "data.task=reasoning", "data.prompts_per_step=4",
        "run.global_batch_size=4", "run.micro_batch_size=8", "rollout.engine=hf", "rollout.n=4",
        "rollout.max_tokens=8", "reward.l_exp=4", "reward.l_max=8", f"reward.judge={judge}", "reward.judge_engine=hf",
        "reward.judge_max_tokens=6", "run.tensorboard=false", "run.export=false", f"run.out={out}", *extra])


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_rewards_follow_the_judge_and_the_mix(setup, tmp_path, weight):
    root, policy, judge_dir = setup
    cfg = _cfg(root, policy, judge_dir, tmp_path / "x", f"reward.judge_weight={weight}")
    items = load_rl_items(str(root / "rl.jsonl"), "reasoning", "pointwise")[:3]
    # the judge says "correct" exactly when the response's text contains the letter "e"
    says_correct = {}  # prompt -> the scripted verdict (a hash of the prompt decides)

    def verdict(prompt):
        says_correct[prompt] = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 2 == 0
        return "[[score=4]]" if says_correct[prompt] else "[[score=0]]"

    spy = RecordingJudge(HFEngine(str(judge_dir)), verdict)
    judge = JudgeReward(lambda: spy, max_tokens=6, context=None)
    policy_engine = HFEngine(str(policy))
    rollouts = generate_and_score(policy_engine, items, 7, cfg, 0, judge=judge)
    assert len(rollouts) == 12 and spy.calls == 1  # one batched call for the whole step
    stats = judge.take()
    assert stats.judged == len(set(spy.prompts)) and stats.judged + stats.cached == 12 and stats.invalid == 0
    for i, r in enumerate(rollouts):
        text = policy_engine.tokenizer.decode(r.response_ids, skip_special_tokens=True)
        prompt = render("pointwise", question=items[i // 4].question, response=text)
        assert r.judged == says_correct[prompt]  # this rollout's own verdict, from its own prompt
        expected = weight * r.judged + (1 - weight) * r.correct - length_penalty(len(r.response_ids), 4, 8)
        assert r.reward == pytest.approx(expected)
    assert {r.judged for r in rollouts} == {True, False}  # the rule above splits this batch both ways
    # the same pairs again: all from the cache, no engine call
    generate_and_score(HFEngine(str(policy)), items, 7, cfg, 0, judge=judge)
    assert spy.calls == 1 and judge.take().cached == 12


def test_prompts_show_question_and_response_only(setup):
    root, _, judge_dir = setup
    spy = RecordingJudge(HFEngine(str(judge_dir)))
    judge = JudgeReward(lambda: spy, max_tokens=4, context=None)
    verdicts = judge(["What is 2 + 3?"], ["It is 5."])
    assert spy.prompts == [render("pointwise", question="What is 2 + 3?", response="It is 5.")]
    stats = judge.take()
    assert verdicts == [False] and stats.invalid == 1  # a random judge writes no verdict: counted, not hidden
    short = JudgeReward(lambda: spy, max_tokens=4, context=64)  # the pointwise prompt alone is longer
    assert short(["q"], ["r"]) == [False] and short.take().too_long == 1 and spy.calls == 1


def test_grpo_run_with_a_judge_engine(setup, tmp_path):
    root, policy, judge_dir = setup
    out = tmp_path / "run"
    started = []

    def factory(cfg):
        started.append(cfg.reward.judge)
        return RecordingJudge(HFEngine(cfg.reward.judge))

    train_grpo(_cfg(root, policy, judge_dir, out, "run.max_steps=2"), judge_factory=factory)
    assert started == [str(judge_dir)]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    for m in lines:
        assert m["judge_invalid"] == pytest.approx(1.0)  # a random tiny judge: no verdicts, all counted
        assert m["judge_correct"] == 0 and 0 <= m["judge_agreement"] <= 1 and m["time_judge"] > 0
        assert m["reward"] <= 0  # nothing judged correct: the reward is minus the length penalty
