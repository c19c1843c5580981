"""Steps 1-3 of a rollout step as data: one round of prompts sampled and scored on this rank
(``sample_round``, no collectives, so asynchronous GRPO can run it in the engine's thread), and the step's
global counts (``step_totals``, collective, on the trainer's thread)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from libra.train.dist import World
from libra.train.grpo.advantages import assign_advantages, uniform_groups
from libra.train.grpo.config import GRPOConfig
from libra.train.grpo.rollouts import PromptStream, Rollout, generate_and_score
from libra.train.judge_reward import JudgeReward
from libra.train.rl_tasks import RLItem
from libra.train.session import TrainSession
from libra.verify import failure_counts


@dataclass
class RolloutStep:
    """What a rollout step gathered on this rank: every rollout generated (all refill rounds), the ones
    kept for learning, and the global counts of groups, of groups whose rewards all agree and of answer
    checks that failed (timed out, lost their worker) while scoring them."""

    rollouts: list[Rollout]
    kept: list[Rollout]
    groups: int
    uniform_groups: int
    check_failures: int


def sample_round(cfg: GRPOConfig, world: World, engine, items: list[RLItem], stream: PromptStream, round_: int,
                 version: int, judge: JudgeReward | None = None) -> tuple[list[Rollout], list[Rollout]]:
    """This rank's share of the stream's next ``prompts_per_step`` prompts: their rollouts (sampled by
    policy ``version``), scored, and those kept with their group advantages. Sampling seeds follow the
    stream's cursor, so a round's samples depend only on where the stream stands and on the weights."""
    P, n = cfg.data.prompts_per_step, cfg.rollout.n
    share = P // world.world_size
    start = stream.cursor
    chosen = stream.take(P)[world.rank * share:(world.rank + 1) * share]
    seed = cfg.run.seed * 1_000_003 + (start + world.rank * share) * n  # unique per sample
    batch = generate_and_score(engine, [items[i] for i in chosen], seed, cfg, first_group=round_ * share,
                               judge=judge)
    for r in batch:
        r.version = version
    return batch, assign_advantages(batch, n, cfg.rollout.dynamic_sampling, cfg.loss.scale_advantages)


def step_totals(session: TrainSession, cfg: GRPOConfig, rollouts: list[Rollout], kept: list[Rollout],
                check_failures: int) -> RolloutStep:
    """The step's global counts (a collective) around this rank's rollouts."""
    n = cfg.rollout.n
    rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
    uniform = int(uniform_groups(rewards, n).sum()) if rollouts else 0
    groups, uniform, failed = session.global_sum(len(rollouts) // n, uniform, check_failures)
    return RolloutStep(rollouts, kept, int(groups), int(uniform), int(failed))


def collect_rollouts(session: TrainSession, cfg: GRPOConfig, engine, items: list[RLItem], stream: PromptStream,
                     judge: JudgeReward | None = None) -> RolloutStep:
    """Steps 1-3 for the synchronous loop: with dynamic sampling, groups whose rewards all agree are
    dropped and the stream refills while fewer than ``prompts_per_step`` groups are kept over all ranks.
    The verifier counts its failed checks process-wide (``libra.verify.failure_counts``); the step's are
    the difference over scoring."""
    P, n = cfg.data.prompts_per_step, cfg.rollout.n
    failed_before = sum(failure_counts().values())
    version = session.step // (cfg.loss.ppo_epochs * (P // cfg.run.global_batch_size))
    rollouts: list[Rollout] = []
    kept: list[Rollout] = []
    for round_ in range(1 + (cfg.rollout.max_refill_rounds if cfg.rollout.dynamic_sampling else 0)):
        batch, batch_kept = sample_round(cfg, session.world, engine, items, stream, round_, version, judge)
        rollouts += batch
        kept += batch_kept
        (global_kept,) = session.global_sum(len(kept) // n)
        if not cfg.rollout.dynamic_sampling or global_kept >= P:
            break
    return step_totals(session, cfg, rollouts, kept, sum(failure_counts().values()) - failed_before)
