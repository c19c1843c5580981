"""The GRPO loop: each rollout step collects rollouts (steps 1-3), sleeps the engine, learns (4-5), wakes
it and pushes the new weights into it (6), and evaluates when due (7). Every rank runs its own engine on
its share of prompts.

Metrics per step: reward, accuracy, the share of groups whose rewards all agree (``uniform_groups``, before
dynamic sampling drops them), answer checks that could not finish (``check_failures``: scored as not
correct, so a rising count means rewards that judged nothing), clip fractions, ppo_kl, KL, entropy,
response length, rollout/trainer log-prob mismatch, time per stage and tokens/s, the judge reward's
``judge_*`` with ``reward.judge``, and ``eval_accuracy`` / ``eval_invalid`` on evaluation steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from libra.config import ConfigError, check
from libra.data.jsonl import SkipCounter
from libra.rollout.logprob_check import logprob_mismatch
from libra.train.grpo.advantages import assign_advantages, uniform_groups
from libra.train.grpo.config import GRPOConfig
from libra.train.grpo.heldout import HeldOutEval
from libra.train.grpo.learning import learn
from libra.train.grpo.rollouts import (
    EngineFactory,
    JudgeFactory,
    PromptStream,
    Rollout,
    build_judge_reward,
    generate_and_score,
    start_engine,
)
from libra.train.judge_reward import JudgeReward
from libra.train.model import full_state_dict
from libra.train.rl_tasks import RLItem, load_rl_items
from libra.train.session import TrainSession, load_tokenizer
from libra.verify import failure_counts


@dataclass
class RolloutStep:
    """What ``collect_rollouts`` gathered on this rank: every rollout generated (all refill rounds), the
    ones kept for learning, and the global counts of groups, of groups whose rewards all agree and of answer
    checks that failed (timed out, lost their worker) while scoring them."""

    rollouts: list[Rollout]
    kept: list[Rollout]
    groups: int
    uniform_groups: int
    check_failures: int


def collect_rollouts(session: TrainSession, cfg: GRPOConfig, engine, items: list[RLItem], stream: PromptStream,
                     judge: JudgeReward | None = None) -> RolloutStep:
    """Steps 1-3: this rank's share of the next prompts, their rollouts, rewards and group advantages;
    with dynamic sampling, groups whose rewards all agree are dropped and the stream refills. The
    verifier counts its failed checks process-wide (``libra.verify.failure_counts``); the step's are the
    difference over scoring."""
    world, P, n = session.world, cfg.data.prompts_per_step, cfg.rollout.n
    failed_before = sum(failure_counts().values())
    share = P // world.world_size
    rollouts: list[Rollout] = []
    kept: list[Rollout] = []
    for round_ in range(1 + (cfg.rollout.max_refill_rounds if cfg.rollout.dynamic_sampling else 0)):
        start = stream.cursor
        chosen = stream.take(P)[world.rank * share:(world.rank + 1) * share]
        seed = cfg.run.seed * 1_000_003 + (start + world.rank * share) * n  # unique per sample
        batch = generate_and_score(engine, [items[i] for i in chosen], seed, cfg, first_group=round_ * share,
                                   judge=judge)
        rollouts += batch
        kept += assign_advantages(batch, n, cfg.rollout.dynamic_sampling, cfg.loss.scale_advantages)
        (global_kept,) = session.global_sum(len(kept) // n)
        if not cfg.rollout.dynamic_sampling or global_kept >= P:
            break
    rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
    uniform = int(uniform_groups(rewards, n).sum()) if rollouts else 0
    failed = sum(failure_counts().values()) - failed_before
    groups, uniform, failed = session.global_sum(len(rollouts) // n, uniform, failed)
    return RolloutStep(rollouts, kept, int(groups), int(uniform), int(failed))


def train_grpo(cfg: GRPOConfig, *, engine_factory: EngineFactory | None = None,
               judge_factory: JudgeFactory | None = None) -> None:
    """``engine_factory(cfg, seed)`` starts the rollout engine (default ``start_engine``: vLLM or
    transformers as ``rollout.engine`` says); benchmarks pass their own to time or count it.
    ``judge_factory(cfg)`` starts the judge of ``reward.judge`` (default ``start_judge``)."""
    check(cfg)  # a config built in code gets the checks load_config runs
    tokenizer = load_tokenizer(cfg)
    skipped = SkipCounter() if cfg.data.skip_bad else None
    items = load_rl_items(cfg.data.train, cfg.data.task, cfg.data.template, skipped)
    P, G = cfg.data.prompts_per_step, cfg.run.global_batch_size
    if not items:
        raise ConfigError(cfg.data.train, "data.train", "no usable prompts")
    updates_per_step = cfg.loss.ppo_epochs * (P // G)
    rollout_steps = max(1, -(-len(items) * cfg.data.epochs // P))
    total = rollout_steps * updates_per_step
    total = min(total, cfg.run.max_steps) if cfg.run.max_steps else total
    with TrainSession(cfg, total_steps=total, desc="grpo", tokenizer=tokenizer) as session:
        if P % session.world.world_size:
            raise ConfigError("config", "data.prompts_per_step",
                              f"{P} is not a multiple of the world size {session.world.world_size}")
        held_out = HeldOutEval(session, cfg, updates_per_step)
        reference = session.build_reference() if cfg.loss.kl_coef > 0 else None
        stream = PromptStream(len(items), cfg.run.seed, session.state.get("cursor", 0))
        judge = build_judge_reward(cfg, judge_factory)
        engine = (engine_factory or start_engine)(cfg, cfg.run.seed)
        try:
            if session.resumed_from is not None:
                engine.update_weights(full_state_dict(session.model).items())
            if session.step == 0 and held_out.due(first=True):  # before any update
                session.logger.log(0, held_out(engine))
            while not session.done:
                t0, first_update = time.perf_counter(), session.step
                step = collect_rollouts(session, cfg, engine, items, stream, judge)
                engine.sleep()
                t1 = time.perf_counter()
                update_stats, logprob_s = learn(session, cfg, step.kept, reference)
                t3 = time.perf_counter()
                engine.wake_up()
                engine.update_weights(full_state_dict(session.model).items())
                t4 = time.perf_counter()
                metrics = _step_metrics(session, step, update_stats, (t0, t1, t1 + logprob_s, t3, t4))
                if judge is not None:
                    metrics.update(_judge_metrics(session, step, judge.take()))
                if held_out.due():
                    metrics.update(held_out(engine))
                session.logger.log(session.step, metrics)
                session.maybe_save({"cursor": stream.cursor}, since=first_update)
            session.finish({"cursor": stream.cursor})
        finally:
            engine.close()
            if judge is not None:
                judge.close()


def _judge_metrics(session: TrainSession, step: RolloutStep, stats) -> dict:
    """The judge reward's step: share judged correct, its failures, cache hits, agreement with the
    rule-based check (the gold answer, which the reward itself did not read), and its time."""
    judged = [r for r in step.rollouts if r.judged is not None]
    n, correct, agree, asked, cached, invalid, too_long = session.global_sum(
        len(judged), sum(r.judged for r in judged), sum(r.judged == r.correct for r in judged), stats.judged,
        stats.cached, stats.invalid, stats.too_long)
    return {"judge_correct": correct / max(n, 1), "judge_agreement": agree / max(n, 1),
            "judge_invalid": invalid / max(asked, 1), "judge_too_long": too_long / max(asked, 1),
            "judge_cached": cached / max(n, 1), "time_judge": stats.seconds}


def _step_metrics(session: TrainSession, step: RolloutStep, updates: list[dict], times: tuple[float, ...]) -> dict:
    rollouts, kept = step.rollouts, step.kept
    mismatch = logprob_mismatch([r.engine_logp for r in kept], [r.old_logp for r in kept]) if kept else None
    sums = session.global_sum(
        len(rollouts), sum(r.reward for r in rollouts), sum(r.correct for r in rollouts),
        sum(len(r.response_ids) for r in rollouts), sum(r.truncated for r in rollouts), len(kept),
        mismatch["mean_abs"] * mismatch["tokens"] if mismatch else 0.0, mismatch["tokens"] if mismatch else 0,
        sum(len(r.prompt_ids) + len(r.response_ids) for r in rollouts))
    n, reward, correct, length, truncated, kept_n, mm_sum, mm_tokens, all_tokens = sums
    t0, t1, t2, t3, t4 = times
    last = updates[-1] if updates else {}
    return {
        "reward": reward / n, "accuracy": correct / n, "response_length": length / n, "truncated": truncated / n,
        "kept_fraction": kept_n / n, "uniform_groups": step.uniform_groups / max(step.groups, 1),
        "check_failures": step.check_failures,
        "logprob_mismatch": mm_sum / mm_tokens if mm_tokens else 0.0,
        **{k: sum(u[k] for u in updates) / len(updates) for k in ("clipfrac_high", "clipfrac_low", "ppo_kl", "kl",
                                                                  "entropy", "grad_norm", "is_capped",
                                                                  "correction_dropped", "truncation_masked")
           if updates},
        "lr": last.get("lr", 0.0), "skipped": sum(u["skipped"] for u in updates),
        "time_generate": t1 - t0, "time_logprobs": t2 - t1, "time_update": t3 - t2, "time_sync": t4 - t3,
        "tokens_per_s": all_tokens / (t4 - t0), "generate_tokens_per_s": length / max(t1 - t0, 1e-9),
    }
