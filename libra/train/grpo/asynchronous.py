"""Asynchronous GRPO (``rollout.max_staleness=K``, K >= 1): the engine samples the next rollout steps while
the trainer learns the current one.

Which weights sample which step is fixed by a schedule, never by timing: rollout step r is sampled by policy
version max(0, r - K) (version v: the weights after v rollout steps), so a run is deterministic for its seed
whichever side is faster. The engine belongs to one thread of this process (``AsyncRollouts``) from the
first job to the last; its jobs (``schedule``) are, in order: push a version's weights, evaluate the held-out
bench on a version it holds, sample and score a step. vLLM computes in its own engine process, so that
thread mostly waits on it while the trainer's thread computes. After learning step v - 1 the trainer hands
over a CPU copy of version v when a job needs it; when sampling is the slower side up to K + 1 copies wait.

Loss: the engine's log-probs are the behaviour policy and the trainer's recomputed (or on-policy) log-probs
the proximal one, as in decoupled PPO (AReaL): the clip acts on the ratio to the proximal policy, and
``loss.rollout_correction`` weights or drops tokens by the proximal/behaviour ratio (without one the
behaviour gap goes uncorrected; the run warns at start).

Resume: a checkpoint taken after rollout step r holds this rank's rollouts of steps r+1..r+K
(``state_rank*.pt``), sampled by versions the checkpoint's weights cannot reproduce; the trainer waits for
them before it saves, so a run killed at any point resumes bitwise.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

import torch

from libra.train.grpo.collect import sample_round
from libra.train.grpo.config import GRPOConfig
from libra.train.grpo.heldout import HeldOutEval
from libra.train.grpo.rollouts import PromptStream, Rollout
from libra.train.judge_reward import JudgeReward, JudgeStats
from libra.train.model import full_state_dict
from libra.train.rl_tasks import RLItem
from libra.train.session import TrainSession
from libra.verify import failure_counts

Job = tuple[str, int]  # ("push", version) | ("eval", version) | ("sample", rollout step)


def schedule(version: int, first: int, steps: int, staleness: int, evals: set[int]) -> list[Job]:
    """The engine's jobs, in order, for a run of ``steps`` rollout steps whose engine holds ``version`` and
    whose next step to sample is ``first``: each step r after the push of version max(0, r - staleness),
    each version in ``evals`` evaluated right after it arrives (those no step needs are pushed at the end)."""
    jobs: list[Job] = []
    held = version

    def hold(v: int) -> None:
        nonlocal held
        if v != held:
            jobs.append(("push", v))
            held = v
        if v in evals and ("eval", v) not in jobs:
            jobs.append(("eval", v))

    hold(version)
    for r in range(first, steps):
        hold(max(0, r - staleness))
        jobs.append(("sample", r))
    for v in sorted(e for e in evals if e > held):
        hold(v)
    return jobs


@dataclass
class Sampled:
    """One rollout step as the engine's thread left it: its rollouts (all kept: no dynamic sampling here),
    the answer checks that failed while scoring, the prompt stream's cursor after it, and where the
    engine's time went: sampling and scoring, waiting for the weights, pushing them."""

    index: int
    rollouts: list[Rollout]
    check_failures: int
    cursor: int
    seconds: float
    engine_idle: float
    sync_seconds: float
    judge: JudgeStats | None = None

    def pack(self) -> dict:
        """Tensors, lists and numbers only (``torch.load(weights_only=True)`` reads them back exactly)."""
        rows = [dict(group=r.group, prompt_ids=torch.tensor(r.prompt_ids, dtype=torch.long),
                     response_ids=torch.tensor(r.response_ids, dtype=torch.long),
                     engine_logp=torch.tensor(r.engine_logp, dtype=torch.float64), reward=r.reward, correct=r.correct,
                     truncated=r.truncated, advantage=r.advantage, judged=r.judged, version=r.version)
                for r in self.rollouts]
        return dict(index=self.index, rollouts=rows, check_failures=self.check_failures, cursor=self.cursor,
                    seconds=self.seconds, engine_idle=self.engine_idle, sync_seconds=self.sync_seconds,
                    judge=asdict(self.judge) if self.judge is not None else None)

    @classmethod
    def unpack(cls, d: dict) -> Sampled:
        rollouts = [Rollout(r["group"], r["prompt_ids"].tolist(), r["response_ids"].tolist(), r["engine_logp"].tolist(),
                            r["reward"], r["correct"], r["truncated"], r["advantage"], judged=r["judged"],
                            version=r["version"]) for r in d["rollouts"]]
        judge = JudgeStats(**d["judge"]) if d["judge"] is not None else None
        return cls(d["index"], rollouts, d["check_failures"], d["cursor"], d["seconds"], d["engine_idle"],
                   d["sync_seconds"], judge)


class _Closed(Exception):
    """The trainer closed the pipeline: the engine's thread stops at its next wait."""


class AsyncRollouts:
    """The engine's thread and what it shares with the trainer's: the sampled steps, the weight copies
    the jobs wait for, and the finished evaluations. Use as a context manager (closing stops the thread)."""

    def __init__(self, session: TrainSession, cfg: GRPOConfig, engine, items: list[RLItem], stream: PromptStream,
                 judge: JudgeReward | None, held_out: HeldOutEval, *, steps: int, updates_per_step: int,
                 ahead: list[dict] | None = None):
        self.session, self.cfg, self.engine, self.items, self.stream = session, cfg, engine, items, stream
        self.judge, self.held_out, self.per_step = judge, held_out, updates_per_step
        self.staleness, self.steps = cfg.rollout.max_staleness, steps
        version = session.step // updates_per_step
        self.ready = {s.index: s for s in map(Sampled.unpack, ahead or [])}
        first = version + len(self.ready)
        evals = {v for v in held_out.versions(steps) if v > 0 or session.step == 0}
        self.jobs = schedule(version, first, steps, self.staleness, evals)
        self.needed = {v for kind, v in self.jobs if kind == "push"}
        self._held = version
        self._snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self._evals: list[tuple[int, dict]] = []
        self._error: BaseException | None = None
        self._closing = self._done = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="grpo-engine", daemon=True)

    def __enter__(self) -> AsyncRollouts:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        # A job in flight (one generate call) finishes first; after an error the engine may be closed under it.
        self._thread.join(timeout=None if exc[0] is None else 30)

    # --- the trainer's side -------------------------------------------------------------------------------

    def take(self, index: int) -> tuple[Sampled, float]:
        """Rollout step ``index`` once sampled, and the seconds the trainer waited for it."""
        tick = time.perf_counter()
        sampled = self._wait(lambda: index in self.ready, lambda: self.ready.pop(index))
        return sampled, time.perf_counter() - tick

    def publish(self, version: int) -> float:
        """After learning step ``version - 1``: a CPU copy of the weights when a job needs ``version`` (a
        collective, on every rank alike: the schedule is the same everywhere). Returns the seconds it took."""
        if version not in self.needed:
            return 0.0
        tick = time.perf_counter()
        copy = {k: v.detach().to("cpu", copy=True) for k, v in full_state_dict(self.session.model).items()}
        with self._cond:
            self._snapshots[version] = copy
            self._cond.notify_all()
        return time.perf_counter() - tick

    def ahead(self, index: int) -> list[Sampled]:
        """The steps after ``index`` that versions before ``index + 1`` sample (waits for them): what a
        checkpoint taken now must hold."""
        later = range(index + 1, min(index + 1 + self.staleness, self.steps))
        return self._wait(lambda: all(i in self.ready for i in later), lambda: [self.ready[i] for i in later])

    def evaluations(self) -> list[tuple[int, dict]]:
        """Finished held-out evaluations not handed out yet: (optimizer step, metrics)."""
        with self._cond:
            done, self._evals = self._evals, []
        return done

    def finish(self) -> None:
        """Wait for the jobs after the last sampled step (evaluations of the last versions)."""
        self._wait(lambda: self._done, lambda: None)

    def _wait(self, ready, get):
        with self._cond:
            while not ready():
                if self._error is not None:
                    raise RuntimeError("the rollout engine's thread failed") from self._error
                if self._done:
                    raise RuntimeError("the rollout engine's thread ran all its jobs without what the trainer waits "
                                       "for: the schedule and the trainer's steps disagree")
                self._cond.wait(timeout=1.0)
            return get()

    # --- the engine's thread ------------------------------------------------------------------------------

    def _work(self) -> None:
        idle = sync = 0.0
        try:
            for kind, v in self.jobs:
                tick = time.perf_counter()
                if kind == "push":
                    weights = self._engine_wait(v)
                    idle += time.perf_counter() - tick
                    tick = time.perf_counter()
                    self.engine.update_weights(weights.items())
                    self._held = v
                    sync += time.perf_counter() - tick
                elif kind == "eval":
                    metrics = self.held_out(self.engine, step=min(v * self.per_step, self.session.total_steps))
                    with self._cond:
                        self._evals.append((min(v * self.per_step, self.session.total_steps), metrics))
                else:
                    failed = sum(failure_counts().values())
                    rollouts, _ = sample_round(self.cfg, self.session.world, self.engine, self.items, self.stream, 0,
                                               self._held, self.judge)
                    sampled = Sampled(v, rollouts, sum(failure_counts().values()) - failed, self.stream.cursor,
                                      time.perf_counter() - tick, idle, sync,
                                      self.judge.take() if self.judge is not None else None)
                    idle = sync = 0.0
                    with self._cond:
                        self.ready[v] = sampled
                        self._cond.notify_all()
            with self._cond:
                self._done = True
                self._cond.notify_all()
        except _Closed:
            return
        except BaseException as err:  # handed to the trainer's thread, which raises it
            with self._cond:
                self._error = err
                self._cond.notify_all()

    def _engine_wait(self, version: int) -> dict[str, torch.Tensor]:
        with self._cond:
            while version not in self._snapshots:
                if self._closing:
                    raise _Closed
                self._cond.wait()
            return self._snapshots.pop(version)
