"""GRPO with clip-higher, k3 KL and the length-penalised verifiable reward: the Libra-RM recipe (paper
section 4.3 and Appendix D; the defaults in ``config.py`` are the paper's).

One rollout step, and the module that does each part:
  1. take ``prompts_per_step`` prompts from the seeded prompt stream, each rank a contiguous share
     (``rollouts.py``);
  2. generate ``n`` rollouts per prompt with the rollout engine, which holds the current weights
     (``rollouts.py``);
  3. score each (``is_correct - length penalty``, optionally with a judge; ``rollouts.py``), group
    advantages, and with dynamic sampling drop groups whose rewards all agree and refill from the stream
     (``advantages.py``, ``collect.py``);
  4. old and reference log-probs (``learning.py``);
  5. ``ppo_epochs`` passes over mini-batches of ``global_batch_size`` prompts, one optimizer step each
     (``learning.py``: the loss family, rollout correction and normalisation);
  6. push the new weights into the engine (``loop.py``; with ``rollout.max_staleness`` the engine samples
     ahead in a thread of its own while the trainer learns: ``asynchronous.py``);
  7. with an ``eval`` section, judge a held-out bench with the same engine (``heldout.py``).
Imports run one way: config <- rollouts <- advantages <- collect <- asynchronous; rollouts <- learning;
config <- heldout <- asynchronous; all of them <- loop.
(``learning.py``, not ``update.py``: a submodule named like the re-exported ``update`` would be shadowed by
it as an attribute of this package.)
"""

from libra.train.grpo.advantages import assign_advantages, uniform_groups
from libra.train.grpo.asynchronous import AsyncRollouts, schedule
from libra.train.grpo.collect import RolloutStep, collect_rollouts, sample_round, step_totals
from libra.train.grpo.config import (
    GRPOConfig,
    GRPODataConfig,
    GRPOEvalConfig,
    GRPOLossConfig,
    RewardConfig,
    RolloutConfig,
)
from libra.train.grpo.heldout import HeldOutEval
from libra.train.grpo.learning import compute_logprobs, learn, update
from libra.train.grpo.loop import train_grpo
from libra.train.grpo.rollouts import (
    EngineFactory,
    JudgeFactory,
    PromptStream,
    Rollout,
    generate_and_score,
    start_engine,
    start_judge,
)

__all__ = [
    "AsyncRollouts", "EngineFactory", "GRPOConfig", "GRPODataConfig", "GRPOEvalConfig", "GRPOLossConfig", "HeldOutEval",
    "JudgeFactory", "PromptStream", "RewardConfig", "Rollout", "RolloutConfig", "RolloutStep", "assign_advantages",
    "collect_rollouts", "compute_logprobs", "generate_and_score", "learn", "sample_round", "schedule",
    "start_engine", "start_judge", "step_totals", "train_grpo", "uniform_groups", "update",
]
