"""The GRPO loop. Synchronous (``rollout.max_staleness=0``): each rollout step collects rollouts (steps
1-3), sleeps the engine, learns (4-5), wakes it and pushes the new weights into it (6), and evaluates when
due (7). Asynchronous (K >= 1, ``asynchronous.py``): the engine's thread samples up to K steps ahead with
the weights the schedule names while this thread learns. Every rank runs its own engine on its share of
prompts.

Metrics per step: reward, accuracy, the share of groups whose rewards all agree (``uniform_groups``, before
dynamic sampling drops them), answer checks that could not finish (``check_failures``: scored as not
correct, so a rising count means rewards that judged nothing), clip fractions, ppo_kl, KL, entropy,
response length, rollout/trainer log-prob mismatch, time per stage (``time_*``; ``time_step`` the trainer's
whole step) and tokens/s, the judge reward's
``judge_*`` with ``reward.judge``, and ``eval_accuracy`` / ``eval_invalid`` on evaluation steps.
"""

from __future__ import annotations

import sys
import time

from libra.config import ConfigError, check
from libra.data.jsonl import SkipCounter
from libra.rollout.logprob_check import logprob_mismatch
from libra.train.grpo.asynchronous import AsyncRollouts
from libra.train.grpo.collect import RolloutStep, collect_rollouts, step_totals
from libra.train.grpo.config import GRPOConfig
from libra.train.grpo.heldout import HeldOutEval
from libra.train.grpo.learning import learn
from libra.train.grpo.placement import split_cores
from libra.train.grpo.rollouts import EngineFactory, JudgeFactory, PromptStream, build_judge_reward, start_engine
from libra.train.judge_reward import JudgeReward
from libra.train.model import full_state_dict
from libra.train.rl_tasks import RLItem, load_rl_items
from libra.train.session import TrainSession, load_tokenizer


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
    if cfg.run.max_steps:
        total = min(total, cfg.run.max_steps)
        rollout_steps = -(-total // updates_per_step)
    with TrainSession(cfg, total_steps=total, desc="grpo", tokenizer=tokenizer) as session:
        if P % session.world.world_size:
            raise ConfigError("config", "data.prompts_per_step",
                              f"{P} is not a multiple of the world size {session.world.world_size}")
        held_out = HeldOutEval(session, cfg, updates_per_step)
        reference = session.build_reference() if cfg.loss.kl_coef > 0 else None
        stream = PromptStream(len(items), cfg.run.seed, session.state.get("cursor", 0))
        judge = build_judge_reward(cfg, judge_factory)
        split = cfg.rollout.cpu_split and cfg.rollout.max_staleness > 0 and session.world.device.type == "cpu"
        with split_cores(split):
            engine = (engine_factory or start_engine)(cfg, cfg.run.seed)
            try:
                if session.resumed_from is not None:
                    engine.update_weights(full_state_dict(session.model).items())
                if cfg.rollout.max_staleness:
                    _train_async(session, cfg, engine, items, stream, judge, held_out, reference, rollout_steps,
                                 updates_per_step)
                else:
                    _train_sync(session, cfg, engine, items, stream, judge, held_out, reference)
            finally:
                engine.close()
                if judge is not None:
                    judge.close()


def _train_sync(session: TrainSession, cfg: GRPOConfig, engine, items: list[RLItem], stream: PromptStream,
                judge: JudgeReward | None, held_out: HeldOutEval, reference) -> None:
    """Each rollout step in turn: sample and score, sleep the engine, learn, wake it and push the weights."""
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
        metrics = _step_metrics(session, step, update_stats, dict(generate=t1 - t0, logprobs=logprob_s,
                                                                  update=t3 - t1 - logprob_s, sync=t4 - t3), t4 - t0)
        if judge is not None:
            metrics.update(_judge_metrics(session, step, judge.take()))
        if held_out.due():
            metrics.update(held_out(engine))
        session.logger.log(session.step, metrics)
        session.maybe_save({"cursor": stream.cursor}, since=first_update)
    session.finish({"cursor": stream.cursor})


def _train_async(session: TrainSession, cfg: GRPOConfig, engine, items: list[RLItem], stream: PromptStream,
                 judge: JudgeReward | None, held_out: HeldOutEval, reference, rollout_steps: int,
                 updates_per_step: int) -> None:
    """The engine samples ahead in its own thread (``asynchronous.py``) while this one learns. Each step's
    metrics add ``staleness`` (versions between the learner and the sampler), ``trainer_idle`` (waiting for
    the rollouts), ``engine_idle`` (the engine waiting for weights before sampling them) and
    ``time_snapshot`` (the weight copy handed to the engine); ``time_generate`` and ``time_sync`` are the
    engine thread's, overlapped with learning. Evaluations are logged as records of their own."""
    if session.world.is_main and cfg.loss.rollout_correction == "none":
        print(f"warning: rollout.max_staleness={cfg.rollout.max_staleness} with loss.rollout_correction=none: the "
              "gap between the policy that sampled a step and the one that learns it is not corrected",
              file=sys.stderr, flush=True)
    ahead = session.checkpoints.rank_state(session.resumed_from) if session.resumed_from is not None else None
    with AsyncRollouts(session, cfg, engine, items, stream, judge, held_out, steps=rollout_steps,
                       updates_per_step=updates_per_step, ahead=ahead["ahead"] if ahead else None) as pipeline:
        cursor = stream.cursor
        while not session.done:
            t0, first_update, index = time.perf_counter(), session.step, session.step // updates_per_step
            sampled, waited = pipeline.take(index)
            step = step_totals(session, cfg, sampled.rollouts, sampled.rollouts, sampled.check_failures)
            t1 = time.perf_counter()
            update_stats, logprob_s = learn(session, cfg, step.kept, reference)
            t3 = time.perf_counter()
            snapshot_s = pipeline.publish(index + 1)
            t4 = time.perf_counter()
            metrics = _step_metrics(session, step, update_stats,
                                    dict(generate=sampled.seconds, logprobs=logprob_s, update=t3 - t1 - logprob_s,
                                         sync=sampled.sync_seconds), t4 - t0)
            staleness = [index - r.version for r in sampled.rollouts]
            idle = session.global_sum(waited, sampled.engine_idle, max(staleness, default=0))
            metrics.update(trainer_idle=idle[0] / session.world.world_size,
                           engine_idle=idle[1] / session.world.world_size,
                           staleness=int(idle[2]) // session.world.world_size, time_snapshot=snapshot_s)
            if judge is not None:
                metrics.update(_judge_metrics(session, step, sampled.judge))
            for at, evaluated in pipeline.evaluations():
                session.logger.log(at, evaluated)
            session.logger.log(session.step, metrics)
            cursor = sampled.cursor
            if session.save_due(first_update):
                later = pipeline.ahead(index)
                session.maybe_save({"cursor": later[-1].cursor if later else cursor}, since=first_update,
                                   rank_state={"ahead": [s.pack() for s in later]})
        pipeline.finish()
        for at, evaluated in pipeline.evaluations():
            session.logger.log(at, evaluated)
    session.finish({"cursor": cursor})


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


def _step_metrics(session: TrainSession, step: RolloutStep, updates: list[dict], times: dict[str, float],
                  wall: float) -> dict:
    """``times``: seconds per stage (generate, logprobs, update, sync); ``wall``: the trainer's whole step."""
    rollouts, kept = step.rollouts, step.kept
    mismatch = logprob_mismatch([r.engine_logp for r in kept], [r.old_logp for r in kept]) if kept else None
    sums = session.global_sum(
        len(rollouts), sum(r.reward for r in rollouts), sum(r.correct for r in rollouts),
        sum(len(r.response_ids) for r in rollouts), sum(r.truncated for r in rollouts), len(kept),
        mismatch["mean_abs"] * mismatch["tokens"] if mismatch else 0.0, mismatch["tokens"] if mismatch else 0,
        sum(len(r.prompt_ids) + len(r.response_ids) for r in rollouts))
    n, reward, correct, length, truncated, kept_n, mm_sum, mm_tokens, all_tokens = sums
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
        **{f"time_{k}": v for k, v in times.items()}, "time_step": wall,
        "tokens_per_s": all_tokens / wall, "generate_tokens_per_s": length / max(times["generate"], 1e-9),
    }
