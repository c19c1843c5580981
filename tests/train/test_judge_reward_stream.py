"""Streamed judge rewards: ``JudgeReward.submit`` runs batches on the judge's own thread (in order, cache and
counts kept, errors handed back), and a streamed GRPO step (``reward.stream``) judges batches while the
rest of the step still generates, with exactly the rollouts, order, rewards and verdicts of the step that
judges everything after generation."""
import hashlib
import json
import threading

import pytest

from libra.config import load_config
from libra.models.tiny import save_tiny
from libra.rollout import HFEngine
from libra.rollout.types import Generation, Sample
from libra.train.grpo import GRPOConfig, generate_and_score
from libra.train.judge_reward import JudgeReward
from libra.train.rl_tasks import load_rl_items


def says_correct(prompt: str) -> bool:
    """The scripted verdict of a judging prompt: a hash of the prompt decides, so each pair has its own."""
    return int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 2 == 0


class ScriptedJudge:
    """A judge engine whose verdicts follow ``says_correct``; with ``inner`` (a real engine) it generates
    first and only its text is replaced. Records each call's thread and size; ``fail_on`` makes that call
    (1-based) raise; with ``hold`` the first call waits for ``release`` (the engine busy)."""

    def __init__(self, inner=None, fail_on: int | None = None, hold: bool = False):
        self.inner, self.fail_on, self.hold = inner, fail_on, hold
        self.tokenizer = inner.tokenizer if inner is not None else None
        self.threads, self.sizes = [], []
        self.called, self.release = threading.Event(), threading.Event()

    def generate(self, prompts, params, **kw):
        self.threads.append(threading.current_thread())
        self.sizes.append(len(prompts))
        self.called.set()
        if self.hold and len(self.sizes) == 1:
            assert self.release.wait(60)
        if len(self.sizes) == self.fail_on:
            raise RuntimeError("the judge engine failed")
        gens = self.inner.generate(prompts, params, **kw) if self.inner is not None else [None] * len(prompts)
        return [Generation(g.prompt_token_ids if g else [1], [Sample([1], "[[score=4]]" if says_correct(
            p[0]["content"]) else "[[score=0]]", "stop")]) for g, p in zip(gens, prompts)]

    def close(self):
        if self.inner is not None:
            self.inner.close()


def test_batches_run_in_order_on_the_judge_thread_those_queued_meanwhile_together():
    spy = ScriptedJudge(hold=True)
    starts = []
    judge = JudgeReward(lambda: starts.append(threading.current_thread()) or spy, context=None)
    first = judge.submit(["q1", "q2"], ["a", "b"])
    assert spy.called.wait(60)  # the engine is busy with the first batch
    second = judge.submit(["q2", "q3", "q3"], ["b", "c", "c"])  # one pair judged before, one twice here
    dropped = judge.submit(["q9"], ["z"])
    third = judge.submit(["q4"], ["d"])
    assert dropped.cancel()  # still queued: never judged
    spy.release.set()
    assert first.result() == [says_correct(p) for p in _prompts(judge, ["q1", "q2"], ["a", "b"])]
    assert second.result()[0] == first.result()[1] and second.result()[1] == second.result()[2]
    assert third.result() == [says_correct(p) for p in _prompts(judge, ["q4"], ["d"])]
    assert spy.sizes == [2, 2]  # the second and third batches in one call: (q3, c) and (q4, d)
    assert len(set(spy.threads)) == 1 and starts == spy.threads[:1] and spy.threads[0] is not threading.current_thread()
    stats = judge.take()
    assert (stats.judged, stats.cached, stats.invalid) == (4, 2, 0) and len(stats.verdicts) == 6
    assert judge(["q5"], ["e"]) == [says_correct(p) for p in _prompts(judge, ["q5"], ["e"])]  # the sync call
    judge.close()
    assert judge(["q6"], ["f"]) == [says_correct(p) for p in _prompts(judge, ["q6"], ["f"])]  # starts again
    assert len(starts) == 2
    judge.close()


def _prompts(judge: JudgeReward, questions, responses) -> list[str]:
    from libra.judge import render

    return [render(judge.template, question=q, response=r) for q, r in zip(questions, responses)]


def test_engine_errors_reach_the_caller():
    judge = JudgeReward(lambda: ScriptedJudge(fail_on=1), context=None)
    failing = judge.submit(["q"], ["a"])
    with pytest.raises(RuntimeError, match="judge engine failed"):
        failing.result()
    assert judge(["q"], ["a"]) == [says_correct(_prompts(judge, ["q"], ["a"])[0])]  # not cached as judged
    judge.close()

    def broken():
        raise OSError("no judge model here")

    with pytest.raises(OSError, match="no judge model"):
        JudgeReward(broken, context=None)(["q"], ["a"])
    with pytest.raises(ValueError, match="2 questions but 1 responses"):
        judge.submit(["q", "r"], ["a"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge-stream")
    policy, judge = save_tiny(root / "policy"), save_tiny(root / "judge")
    rows = [{"question": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1), "task": "reasoning"} for i in range(5)]
    rows.insert(2, {"question": "What is 1 + 1?", "response": "2", "label": True, "task": "pointwise"})
    (root / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, policy, judge


def _cfg(root, policy, judge, *extra):
    return load_config(GRPOConfig, None, [
        f"model.path={policy}", f"data.train={root / 'rl.jsonl'}", "data.task=reasoning", "data.prompts_per_step=6",
        "run.global_batch_size=6", "rollout.engine=hf", "rollout.n=4", "rollout.max_tokens=8", "reward.l_exp=4",
        "reward.l_max=8", f"reward.judge={judge}", "reward.judge_engine=hf", "reward.judge_max_tokens=4",
        "reward.judge_weight=0.5", "reward.judge_batch=3", *extra])


class GatedStream:
    """The policy engine, whose stream hands over its last prompt only once ``gate`` is set (or after
    ``timeout`` seconds): a step that judges only after generation would wait the whole timeout."""

    def __init__(self, inner, gate: threading.Event, timeout: float = 120):
        self.inner, self.gate, self.timeout = inner, gate, timeout
        self.opened: bool | None = None

    def generate_stream(self, prompts, params):
        for n, (i, gen) in enumerate(self.inner.generate_stream(prompts, params), 1):
            if n == len(prompts):
                self.opened = self.gate.wait(self.timeout)
            yield i, gen


@pytest.mark.parametrize("judge_engine", ["scripted", "hf"])
def test_streamed_step_equals_the_step_judged_after_generation(setup, judge_engine):
    root, policy_dir, judge_dir = setup
    items = load_rl_items(str(root / "rl.jsonl"), "reasoning", "pointwise")
    policy = HFEngine(str(policy_dir), batch_size=1)  # a prompt at a time: the stream has something to stream
    steps, spies = {}, {}
    for stream in (False, True):
        spy = ScriptedJudge(HFEngine(str(judge_dir)) if judge_engine == "hf" else None)
        judge = JudgeReward(lambda: spy, max_tokens=4, context=None)
        engine = GatedStream(policy, spy.called) if stream else policy
        steps[stream] = generate_and_score(engine, items, 7, _cfg(root, policy_dir, judge_dir,
                                                                  f"reward.stream={str(stream).lower()}"), 0, judge)
        spies[stream] = (spy, judge.take())
        judge.close()
    assert steps[True] == steps[False]  # every field of every rollout, in order: rewards and verdicts included
    rollouts = steps[True]
    assert len(rollouts) == 24 and [r.group for r in rollouts] == [g for g in range(6) for _ in range(4)]
    assert [r.judged is None for r in rollouts] == [items[r.group].task != "reasoning" for r in rollouts]
    assert {r.judged for r in rollouts if r.judged is not None} == {True, False}
    (after, after_stats), (streamed, streamed_stats) = spies[False], spies[True]
    assert after.sizes == [after_stats.judged] and after_stats.judged + after_stats.cached == 20
    assert len(streamed.sizes) > 1  # batches sent during generation (those queued meanwhile judged together)
    assert (streamed_stats.judged, streamed_stats.cached) == (after_stats.judged, after_stats.cached)
    assert engine.opened  # the judge had a batch before generation was over


def test_a_failed_judge_batch_fails_the_step(setup):
    root, policy_dir, judge_dir = setup
    items = load_rl_items(str(root / "rl.jsonl"), "reasoning", "pointwise")
    judge = JudgeReward(lambda: ScriptedJudge(fail_on=2), max_tokens=4, context=None)
    with pytest.raises(RuntimeError, match="judge engine failed"):
        generate_and_score(HFEngine(str(policy_dir), batch_size=1), items, 7, _cfg(root, policy_dir, judge_dir), 0,
                           judge)
    judge.close()


@pytest.mark.vllm
@pytest.mark.xdist_group("vllm-engine")
def test_streamed_step_with_vllm_rollouts_and_a_vllm_judge(setup):
    """The production pair: vLLM rollouts stepped by hand, a vLLM judge engine started and run on the judge's
    thread (its text scripted, so verdicts vary). The streamed step equals the one judged after generation
    (whose verdicts come from the cache: one judge engine start, not two)."""
    from libra.rollout import VLLMEngine

    root, policy_dir, judge_dir = setup
    items = load_rl_items(str(root / "rl.jsonl"), "reasoning", "pointwise")
    policy = VLLMEngine(str(policy_dir), max_model_len=2048)  # the judging row's pointwise prompt is long
    judge = JudgeReward(lambda: ScriptedJudge(VLLMEngine(str(judge_dir), max_model_len=2048)), max_tokens=4,
                        context=2048)
    try:
        steps = [generate_and_score(policy, items, 7, _cfg(root, policy_dir, judge_dir, "reward.judge_engine=vllm",
                                                           f"reward.stream={stream}"), 0, judge)
                 for stream in ("true", "false")]
    finally:
        judge.close()
        policy.close()
    # everything but the engine's log-probs exactly; those to vLLM's own call-to-call jitter (~5e-7, see
    # tests/rollout/test_vllm_engine.py::assert_same_generation)
    fields = [[(r.group, r.prompt_ids, r.response_ids, r.reward, r.correct, r.truncated, r.judged) for r in step]
              for step in steps]
    assert fields[0] == fields[1] and {r.judged for r in steps[0] if r.judged is not None} == {True, False}
    for streamed, after in zip(*steps):
        assert streamed.engine_logp == pytest.approx(after.engine_logp, abs=1e-5)
