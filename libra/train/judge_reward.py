"""A trained judge as the reward of policy RL on unlabelled problems (paper section 6's promise): each
reasoning rollout is judged by a generative judge served by its own engine, with a pointwise template that
sees the question and the response and never the gold answer.

``reward.judge=MODEL`` turns it on for reasoning prompts. The correctness term of Eq. 3 becomes
``judge_weight * judged_correct + (1 - judge_weight) * rule_correct`` (weight 1: the judge alone, no gold
answer read for the reward; the rule-based check is still computed for the ``accuracy`` log, which is the
policy's true accuracy when gold answers exist). Verdicts are batched (``submit`` a batch, or call with
one), cached by the content of (question, response) for the run, and failures are counted, never hidden:
a judgment without a valid verdict counts as "incorrect" and is logged as ``judge_invalid``; a prompt that
does not fit the judge's context is not generated, counts as invalid too, and is logged as
``judge_too_long``.

One worker thread owns the judge engine and runs the batches in the order submitted, so the caller keeps
generating rollouts (``reward.stream``) while earlier ones are judged; the cache and the counts are
touched only there. Batches that arrive while the engine is busy are judged together in its next call:
an engine's call costs far less than in proportion to its batch (on CPU a tiny judge takes 1.3 s for 16
judgments of 256 tokens and 2.8 s for 64), so a queue of small batches would fall behind. An engine error
reaches the caller through the futures of every batch of that call.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
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
    uncached pair, in the worker thread that then uses it; ``context`` is the judge's context length in
    tokens (prompt + ``max_tokens`` must fit)."""

    def __init__(self, start: Callable[[], Engine], *, template: str = "pointwise", max_tokens: int = 1024,
                 temperature: float = 0.0, threshold: int = 2, strict: bool = TRAINING_STRICT,
                 context: int | None = None):
        self._start, self._engine = start, None
        self.template, self.kind = template, judge_kind(kind_of_template(template))
        self.params = SamplingParams(n=1, temperature=temperature, max_tokens=max_tokens, seed=0)
        self.threshold, self.strict, self.context = threshold, strict, context
        self._cache: dict[str, bool | None] = {}
        self._stats = JudgeStats()
        self._worker: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._queued: list[tuple[list[str], list[str], Future[list[bool]]]] = []  # batches not yet judged
        render(template, question="q", response="r")  # a template that cannot take these fails now

    @staticmethod
    def _key(question: str, response: str) -> str:
        return hashlib.sha256(f"{len(question)}:{question}{response}".encode()).hexdigest()

    def submit(self, questions: Sequence[str], responses: Sequence[str]) -> Future[list[bool]]:
        """Queue one batch; its future gives what a call would (and raises what the call would raise).
        A batch still queued when ``cancel`` is called on its future is never judged."""
        if len(questions) != len(responses):
            raise ValueError(f"{len(questions)} questions but {len(responses)} responses")
        future: Future[list[bool]] = Future()
        with self._lock:
            self._queued.append((list(questions), list(responses), future))
        self._on_worker(self._judge_queued)
        return future

    def __call__(self, questions: Sequence[str], responses: Sequence[str]) -> list[bool]:
        """Judged correct (True) or not (False, also for an invalid or unfit judgment), per pair; after
        every batch submitted before it."""
        return self.submit(questions, responses).result()

    def _on_worker(self, fn: Callable, *args) -> Future:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-reward")
        return self._worker.submit(fn, *args)

    def _judge_queued(self) -> None:
        """Every batch queued by now (none when an earlier run took this one's) in one engine call."""
        with self._lock:
            batches, self._queued = self._queued, []
        batches = [b for b in batches if b[2].set_running_or_notify_cancel()]
        if not batches:
            return
        try:
            verdicts = self._judge([q for qs, _, _ in batches for q in qs], [r for _, rs, _ in batches for r in rs])
        except BaseException as err:
            for *_, future in batches:
                future.set_exception(err)
            return
        start = 0
        for questions, _, future in batches:
            future.set_result(verdicts[start:start + len(questions)])
            start += len(questions)

    def _judge(self, questions: list[str], responses: list[str]) -> list[bool]:
        tick = time.perf_counter()
        keys = [self._key(q, r) for q, r in zip(questions, responses)]
        todo = {}
        for key, q, r in zip(keys, questions, responses):
            if key in self._cache or key in todo:
                self._stats.cached += 1
            else:
                todo[key] = [{"role": "user", "content": render(self.template, question=q, response=r)}]
        if todo:
            if self._engine is None:
                self._engine = self._start()
            fits = {k: p for k, p in todo.items() if self._fits(p)}
            for key in todo.keys() - fits.keys():
                self._cache[key] = None
                self._stats.too_long += 1
            gens = self._engine.generate(list(fits.values()), self.params) if fits else []
            for key, gen in zip(fits, gens):
                verdict = self.kind.parse(gen.samples[0].text, strict=self.strict)
                self._cache[key] = self.kind.outcome(verdict.value, self.threshold) if verdict.valid else None
                self._stats.invalid += not verdict.valid
            self._stats.judged += len(todo)
        out = [self._cache[k] is True for k in keys]
        self._stats.verdicts += out
        self._stats.seconds += time.perf_counter() - tick
        return out

    def _fits(self, prompt) -> bool:
        if self.context is None:
            return True
        return len(prompt_token_ids(self._engine.tokenizer, prompt)) + self.params.max_tokens <= self.context

    def take(self) -> JudgeStats:
        """The counts since the last ``take`` (after every batch submitted before it, and any judged with
        them), and a fresh set."""
        return self._on_worker(self._take).result()

    def _take(self) -> JudgeStats:
        stats, self._stats = self._stats, JudgeStats()
        return stats

    def close(self) -> None:
        """Close the engine (on the thread that used it) and stop the worker; a later batch starts both anew."""
        if self._worker is not None:
            self._on_worker(self._close_engine).result()
            self._worker.shutdown()
            self._worker = None

    def _close_engine(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
