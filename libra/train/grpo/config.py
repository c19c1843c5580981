"""GRPO's settings, one dataclass per config section; the defaults are the paper's recipe (section 4.3 and
Appendix D). ``libra.config.load_config`` resolves these annotations in this module's namespace, so every
name they use must be a real import here, not one under ``TYPE_CHECKING``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import libra_kernels as lk
from libra.judge.verdicts import TRAINING_STRICT
from libra.rewards import L_EXP, L_MAX
from libra.train.config import ModelConfig, RunConfig
from libra.train.optim import OptimConfig
from libra.train.rl_tasks import TASKS
from libra.train.rollout_correction import Mode


@dataclass
class GRPODataConfig:
    train: str = ""  # JSONL of judging rows and/or reasoning problems (see rl_tasks.py)
    task: Literal[TASKS] = "pointwise"
    template: str = "pointwise"  # judging prompt template: builtin name or file
    prompts_per_step: int = 256
    epochs: int = 1
    skip_bad: bool = False


@dataclass
class RolloutConfig:
    engine: Literal["vllm", "hf"] = "vllm"
    n: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = L_MAX
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.5  # the trainer shares the device (the engine sleeps during updates)
    dynamic_sampling: bool = False  # drop groups whose rewards all agree, then refill from the stream
    max_refill_rounds: int = 3


@dataclass
class GRPOLossConfig:
    """The loss family (``libra_kernels.grpo_loss``'s keywords): the paper's GRPO is the default
    (seq-mean-token-mean, per-token ratio); DAPO's token-mean is ``agg=token-mean``; Dr. GRPO is
    ``agg=seq-mean-token-sum-norm`` (``norm_len``, default the generation limit) with
    ``scale_advantages=false``; GSPO is ``ratio_level=sequence`` with its own small clip range (e.g.
    eps_low 3e-4, eps_high 4e-4) and the default agg (GSPO's objective is seq-mean-token-mean).
    ``mask_truncated`` is DAPO's overlong filtering. ``rollout_correction`` (see ``rollout_correction.py``)
    reweights or drops tokens by the trainer/engine probability ratio: TIS caps it at ``correction_high``;
    the mask (masked IS: the true ratio as weight) and reject (weight 1) modes drop the tokens whose ratio at
    their level lies outside [correction_low, correction_high]."""

    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = None
    kl_coef: float = 1e-3  # 0 turns the reference model off (RL-zero)
    kl_kind: Literal["k1", "k2", "k3", "abs"] = "k3"
    agg: Literal[lk.AGGS] = "seq-mean-token-mean"
    norm_len: int | None = None  # Dr. GRPO's constant (None: rollout.max_tokens)
    ratio_level: Literal["token", "sequence"] = "token"
    scale_advantages: bool = True  # divide group advantages by the group's std (Dr. GRPO: false)
    mask_truncated: bool = False
    rollout_correction: Mode = "none"
    correction_low: float = 0.5
    correction_high: float = 2.0
    ppo_epochs: int = 1


@dataclass
class RewardConfig:
    """Eq. 3's reward. With ``judge`` (a judge model folder), reasoning rollouts are also judged by it
    (``judge_reward.py``: its own engine, the pointwise ``judge_template``, no gold answer shown) and the
    correctness term is ``judge_weight * judged + (1 - judge_weight) * rule-based``."""

    l_exp: int = L_EXP
    l_max: int = L_MAX
    threshold: int = 2  # pointwise score >= threshold means "correct"
    strict_verdicts: bool = TRAINING_STRICT  # a verdict counts only after </think>, as in rejection sampling
    judge: str = ""
    judge_engine: Literal["vllm", "hf"] = "vllm"
    judge_template: str = "pointwise"
    judge_max_tokens: int = 1024
    judge_temperature: float = 0.0
    judge_max_model_len: int | None = None  # the judge's context (None: its config's)
    judge_weight: float = 1.0


@dataclass
class GRPOEvalConfig:
    """Held-out judging during the run, with the rollout engine (which holds the current weights): before
    the first update, every ``every`` rollout steps and at the end; off while ``bench`` is empty or
    ``every`` is 0. Results: ``OUT/evals/step_N/{results.json,predictions.jsonl}`` (N the optimizer
    step) and ``eval_accuracy`` / ``eval_invalid`` in metrics.jsonl. Only rank 0 evaluates. A pointwise
    score means "correct" at ``reward.threshold``, as in the reward the run trains on."""

    bench: str = ""  # judging rows (.jsonl, like a Libra Bench file)
    template: str = "pointwise"  # built-in name or template file
    every: int = 0  # rollout steps between evaluations (0: off)
    max_tokens: int = 4096
    temperature: float = 0.0
    n: int = 1  # judgments per row (accuracy is over all of them)
    verdict_mode: Literal["lenient", "strict"] = "lenient"  # as `libra eval libra-bench` reads verdicts


@dataclass
class GRPOConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: GRPODataConfig = field(default_factory=GRPODataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    loss: GRPOLossConfig = field(default_factory=GRPOLossConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: GRPOEvalConfig = field(default_factory=GRPOEvalConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, schedule="constant", warmup_ratio=0.03))
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/grpo", global_batch_size=256,
                                                              micro_batch_size=4))
