"""Where GRPO's rollouts come from: the seeded prompt stream, the engines (rollout and judge) that run
outside the trainer's process group, and Eq. 3's score of every sample, the rule-based check blended with
a judge's verdict when ``reward.judge`` is set (judged while the step still generates, ``reward.stream``)."""

from __future__ import annotations

import os
from concurrent.futures import Future
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable

import torch

from libra.config import ConfigError
from libra.rewards import penalised_reward
from libra.rollout.types import Engine, Generation, SamplingParams
from libra.train.grpo.config import GRPOConfig, RewardConfig
from libra.train.judge_reward import JudgeReward
from libra.train.packing import Example
from libra.train.rl_tasks import RLItem, score


@dataclass
class Rollout:
    """One sample and what learning needs of it: the engine's log-probs (rollout correction, the mismatch
    metric), its reward and group advantage, and the trainer's old and reference log-probs once computed."""

    group: int
    prompt_ids: list[int]
    response_ids: list[int]
    engine_logp: list[float]
    reward: float
    correct: bool
    truncated: bool
    advantage: float = 0.0
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None
    judged: bool | None = None  # with a judge reward: the judge's verdict on this rollout
    version: int = 0  # the policy that sampled it: rollout steps learned before its weights reached the engine

    def example(self) -> Example:
        return Example(self.prompt_ids + self.response_ids, [0] * len(self.prompt_ids) + [1] * len(self.response_ids))


class PromptStream:
    """An endless, seeded sequence of prompt indices (a fresh permutation per epoch); ``cursor`` is the
    only state, saved in checkpoints, so a resumed run sees the same prompts."""

    def __init__(self, n: int, seed: int, cursor: int = 0):
        self.n, self.seed, self.cursor = n, seed, cursor

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            epoch, offset = divmod(self.cursor, self.n)
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            chunk = order[offset:offset + k - len(out)]
            out += chunk
            self.cursor += len(chunk)
        return out


@contextmanager
def _without_torchrun_env():
    """vLLM's workers read RANK/WORLD_SIZE/... if present and would try to join the trainer's group."""
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
             "MASTER_PORT", "TORCHELASTIC_RUN_ID")
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _start(kind: str, path: str, *, seed: int, trust_remote_code: bool, max_model_len: int | None,
           gpu_memory_utilization: float) -> Engine:
    """An engine outside the trainer's process group; the context and memory share only apply to vLLM."""
    from libra.rollout.factory import make_engine

    with _without_torchrun_env():
        kwargs = {} if kind == "hf" else {"max_model_len": max_model_len,
                                          "gpu_memory_utilization": gpu_memory_utilization}
        return make_engine(kind, path, seed=seed, trust_remote_code=trust_remote_code, **kwargs)


def start_engine(cfg: GRPOConfig, seed: int) -> Engine:
    """The rollout engine: ``rollout.engine`` (vLLM or transformers) on ``model.path``."""
    r = cfg.rollout
    return _start(r.engine, cfg.model.path, seed=seed, trust_remote_code=cfg.model.trust_remote_code,
                  max_model_len=r.max_model_len, gpu_memory_utilization=r.gpu_memory_utilization)


def start_judge(cfg: GRPOConfig) -> Engine:
    """The judge engine of ``reward.judge``, on half the rollout engine's memory share."""
    rw = cfg.reward
    return _start(rw.judge_engine, rw.judge, seed=cfg.run.seed, trust_remote_code=cfg.model.trust_remote_code,
                  max_model_len=rw.judge_max_model_len, gpu_memory_utilization=cfg.rollout.gpu_memory_utilization / 2)


EngineFactory = Callable[[GRPOConfig, int], Engine]  # (config, seed) -> a started rollout engine
JudgeFactory = Callable[[GRPOConfig], Engine]  # config -> a started judge engine


def build_judge_reward(cfg: GRPOConfig, judge_factory: JudgeFactory | None) -> JudgeReward | None:
    """The judge reward of ``reward.judge`` (None without one), checked before any engine starts; its
    engine (``judge_factory``, default ``start_judge``) starts when the first uncached pair needs it."""
    rw = cfg.reward
    if not rw.judge:
        return None
    from libra.models.checks import check_model_dir

    check_model_dir(rw.judge)
    context = rw.judge_max_model_len
    if context is None:
        from transformers import AutoConfig

        context = getattr(AutoConfig.from_pretrained(rw.judge), "max_position_embeddings", None)
    try:
        return JudgeReward(lambda: (judge_factory or start_judge)(cfg), template=rw.judge_template,
                           max_tokens=rw.judge_max_tokens, temperature=rw.judge_temperature, threshold=rw.threshold,
                           strict=rw.strict_verdicts, context=context)
    except ValueError as err:
        raise ConfigError("config", "reward.judge_template", str(err)) from None


def generate_and_score(engine: Engine, items: list[RLItem], base_seed: int, cfg: GRPOConfig, first_group: int,
                       judge: JudgeReward | None = None) -> list[Rollout]:
    """``rollout.n`` samples of each item (groups numbered from ``first_group``) with Eq. 3's reward. With
    ``judge``, reasoning samples are judged and their correctness term becomes
    ``judge_weight * judged + (1 - judge_weight) * rule-based``; ``correct`` stays the rule-based check.

    With a judge and ``reward.stream``, prompts are scored as their samples finish
    (``Engine.generate_stream``) and judged in batches of ``reward.judge_batch`` on the judge's thread, so
    judging overlaps generation instead of following it; the rollouts, their order and their rewards are
    those of the unstreamed step. Without a judge the step is generated in one call and scored after: the
    rule check costs little next to generation, so streaming would have nothing to hide."""
    r, rw = cfg.rollout, cfg.reward
    params = SamplingParams(n=r.n, temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens,
                            seed=base_seed, logprobs=True)
    prompts = [it.prompt for it in items]
    streamed = judge is not None and rw.stream
    groups: list[list[Rollout]] = [[] for _ in items]
    unsent: list[tuple[Rollout, str, str]] = []  # (rollout, question, response text) for the judge
    sent: list[tuple[list[Rollout], Future[list[bool]]]] = []
    try:
        with (closing(engine.generate_stream(prompts, params)) if streamed
              else nullcontext(enumerate(engine.generate(prompts, params)))) as finished:
            for g, gen in finished:
                item = items[g]
                groups[g] = _scored(item, gen, first_group + g, rw)
                if judge is not None and item.task == "reasoning":
                    unsent += [(ro, item.question, s.text) for ro, s in zip(groups[g], gen.samples)]
                while streamed and len(unsent) >= rw.judge_batch:
                    sent.append(_submit(judge, unsent[:rw.judge_batch]))
                    del unsent[:rw.judge_batch]
        if unsent:
            sent.append(_submit(judge, unsent))
        for rollouts, verdicts in sent:
            for ro, verdict in zip(rollouts, verdicts.result()):
                ro.judged = verdict
                term = rw.judge_weight * verdict + (1 - rw.judge_weight) * ro.correct
                ro.reward = penalised_reward(term, len(ro.response_ids), rw.l_exp, rw.l_max)
    except BaseException:
        for _, verdicts in sent:  # batches not started yet; a running one ends on the judge's thread
            verdicts.cancel()
        raise
    return [ro for group in groups for ro in group]


def _scored(item: RLItem, gen: Generation, group: int, rw: RewardConfig) -> list[Rollout]:
    """One prompt's rollouts with the rule-based reward."""
    out = []
    for s in gen.samples:
        sc = score(item, s.text, len(s.token_ids), l_exp=rw.l_exp, l_max=rw.l_max, threshold=rw.threshold,
                   strict=rw.strict_verdicts)
        out.append(Rollout(group, list(gen.prompt_token_ids), list(s.token_ids), list(s.logprobs), sc.reward,
                           sc.correct, s.finish_reason == "length"))
    return out


def _submit(judge: JudgeReward, batch: list[tuple[Rollout, str, str]]
            ) -> tuple[list[Rollout], Future[list[bool]]]:
    return [ro for ro, _, _ in batch], judge.submit([q for _, q, _ in batch], [t for _, _, t in batch])
