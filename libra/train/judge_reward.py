"""A trained judge as the reward of policy RL on unlabelled problems (paper section 6's promise): each
reasoning rollout is judged by a generative judge served by its own engine, with a pointwise template that
sees the question and the response and never the gold answer.

``reward.judge=MODEL`` turns it on for reasoning prompts. The correctness term of Eq. 3 becomes
``judge_weight * judged_correct + (1 - judge_weight) * rule_correct`` (weight 1: the judge alone, no gold
answer read for the reward; the rule-based check is still computed for the ``accuracy`` log, which is the
policy's true accuracy when gold answers exist). Verdicts are batched (all rollouts of a step in one engine
call), cached by the content of (question, response) for the run, and failures are counted, never hidden:
a judgment without a valid verdict counts as "incorrect" and is logged as ``judge_invalid``; a prompt that
does not fit the judge's context is not generated, counts as invalid too, and is logged as
``judge_too_long``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from libra.judge import judge_kind, kind_of_template, render
from libra.judge.verdicts import TRAINING_STRICT
from libra.rollout.types import Engine, SamplingParams, prompt_token_ids


@dataclass
class JudgeStats:
    """Counts for one step (``take`` resets them)."""

    judged: int = 0  # verdicts asked of the engine
    cached: int = 0  # rollouts whose (question, response) was judged earlier in the run
    invalid: int = 0  # no valid verdict (counted as incorrect)
    too_long: int = 0  # prompt over the judge's context (not generated; counted as incorrect)
    seconds: float = 0.0
    verdicts: list[bool] = field(default_factory=list)  # judged correct, per rollout of the step


class JudgeReward:
    """Judged correctness of (question, response) pairs. ``start`` builds the judge engine on the first
    uncached pair; ``context`` is the judge's context length in tokens (prompt + ``max_tokens`` must fit)."""

    def __init__(self, start: Callable[[], Engine], *, template: str = "pointwise", max_tokens: int = 1024,
                 temperature: float = 0.0, threshold: int = 2, strict: bool = TRAINING_STRICT,
                 context: int | None = None):
        self._start, self._engine = start, None
        self.template, self.kind = template, judge_kind(kind_of_template(template))
        self.params = SamplingParams(n=1, temperature=temperature, max_tokens=max_tokens, seed=0)
        self.threshold, self.strict, self.context = threshold, strict, context
        self._cache: dict[str, bool | None] = {}
        self.stats = JudgeStats()
        render(template, question="q", response="r")  # a template that cannot take these fails now

    @staticmethod
    def _key(question: str, response: str) -> str:
        return hashlib.sha256(f"{len(question)}:{question}{response}".encode()).hexdigest()

    def __call__(self, questions: Sequence[str], responses: Sequence[str]) -> list[bool]:
        """Judged correct (True) or not (False, also for an invalid or unfit judgment), per pair."""
        tick = time.perf_counter()
        keys = [self._key(q, r) for q, r in zip(questions, responses, strict=True)]
        todo = {}
        for key, q, r in zip(keys, questions, responses):
            if key in self._cache or key in todo:
                self.stats.cached += 1
            else:
                todo[key] = [{"role": "user", "content": render(self.template, question=q, response=r)}]
        if todo:
            if self._engine is None:
                self._engine = self._start()
            fits = {k: p for k, p in todo.items() if self._fits(p)}
            for key in todo.keys() - fits.keys():
                self._cache[key] = None
                self.stats.too_long += 1
            gens = self._engine.generate(list(fits.values()), self.params) if fits else []
            for key, gen in zip(fits, gens):
                verdict = self.kind.parse(gen.samples[0].text, strict=self.strict)
                self._cache[key] = self.kind.outcome(verdict.value, self.threshold) if verdict.valid else None
                self.stats.invalid += not verdict.valid
            self.stats.judged += len(todo)
        out = [self._cache[k] is True for k in keys]
        self.stats.verdicts += out
        self.stats.seconds += time.perf_counter() - tick
        return out

    def _fits(self, prompt) -> bool:
        if self.context is None:
            return True
        return len(prompt_token_ids(self._engine.tokenizer, prompt)) + self.params.max_tokens <= self.context

    def take(self) -> JudgeStats:
        """This step's counts, and a fresh set for the next."""
        stats, self.stats = self.stats, JudgeStats()
        return stats

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
