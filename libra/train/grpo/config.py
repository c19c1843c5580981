"""GRPO's settings, one dataclass per config section; the defaults are the paper's recipe (section 4.3 and
Appendix D). ``libra.config.load_config`` resolves these annotations in this module's namespace, so every
name they use must be a real import here, not one under ``TYPE_CHECKING``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import libra_kernels as lk
from libra.config import ConfigError
from libra.judge.verdicts import TRAINING_STRICT
from libra.rewards import L_EXP, L_MAX
from libra.train.config import ModelConfig, RunConfig
from libra.train.optim import OptimConfig
from libra.train.rl_tasks import TASKS
from libra.train.rollout_correction import Mode, check_thresholds


@dataclass
class GRPODataConfig:
    train: str = ""  # JSONL of judging rows and/or reasoning problems (see rl_tasks.py)
    task: Literal[TASKS] = "pointwise"  # the judge kind of judging rows; a row's own ``task`` overrides it
    template: str = "pointwise"  # judging prompt template: builtin name or file
    prompts_per_step: int = 256  # prompts per rollout step (each sampled rollout.n times)
    epochs: int = 1  # passes over the training prompts
    skip_bad: bool = False  # skip malformed rows (counted and reported) instead of stopping


@dataclass
class RolloutConfig:
    engine: Literal["vllm", "hf"] = "vllm"  # the rollout engine: vLLM, or transformers' generate (no vLLM)
    n: int = 8  # samples per prompt: one GRPO group
    temperature: float = 1.0  # sampling temperature (the trainer's log-probs use the same one)
    top_p: float = 1.0  # nucleus sampling mass
    max_tokens: int = L_MAX  # generation limit per sample (the paper: L_max, 32k)
    max_model_len: int | None = None  # the engine's context length (None: the model config's)
    gpu_memory_utilization: float = 0.5  # the trainer shares the device (the engine sleeps during updates)
    dynamic_sampling: bool = False  # drop groups whose rewards all agree, then refill from the stream
    max_refill_rounds: int = 3  # dynamic sampling's extra rounds per step before it trains on fewer groups
    # Rollout steps the sampling policy may lag: 0 samples each step with the current weights (generate, then
    # learn); K >= 1 samples step r with the weights after step r - K while the trainer learns (asynchronous.py)
    max_staleness: int = 0
    cpu_split: bool = False  # CPU, max_staleness >= 1: vLLM's worker on the last core, the trainer on the others


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

    eps_low: float = 0.2  # the ratio's lower clip, 1 - eps_low
    eps_high: float = 0.28  # the ratio's upper clip, 1 + eps_high (clip-higher: above eps_low)
    dual_clip: float | None = None  # dual-clip PPO's bound on negative-advantage losses (None: off)
    kl_coef: float = 1e-3  # 0 turns the reference model off (RL-zero)
    kl_kind: Literal["k1", "k2", "k3", "abs"] = "k3"  # the KL estimator against the reference model
    agg: Literal[lk.AGGS] = "seq-mean-token-mean"  # how token losses become the batch loss (see above)
    norm_len: int | None = None  # Dr. GRPO's constant (None: rollout.max_tokens)
    ratio_level: Literal["token", "sequence"] = "token"  # per-token ratios, or one per sequence (GSPO)
    scale_advantages: bool = True  # divide group advantages by the group's std (Dr. GRPO: false)
    mask_truncated: bool = False  # leave rollouts cut at max_tokens out of the loss (DAPO)
    rollout_correction: Mode = "none"  # trainer/engine mismatch correction (see above)
    correction_low: float = 0.5  # the mask and reject modes' lower ratio bound
    correction_high: float = 2.0  # TIS's cap; the mask and reject modes' upper ratio bound
    ppo_epochs: int = 1  # passes over each rollout step's samples, one optimizer step per mini-batch


@dataclass
class RewardConfig:
    """Eq. 3's reward. With ``judge`` (a judge model folder), reasoning rollouts are also judged by it
    (``judge_reward.py``: its own engine, the pointwise ``judge_template``, no gold answer shown) and the
    correctness term is ``judge_weight * judged + (1 - judge_weight) * rule-based``. With ``stream``, a
    prompt's rollouts are scored as soon as all of them finish, and judged in batches of ``judge_batch``
    while generation goes on: the same rewards as one batch after generation with a greedy judge (a judge
    sampling at ``judge_temperature > 0`` draws each verdict with a seed set by its place in its batch)."""

    l_exp: int = L_EXP  # length where the length penalty starts (Eq. 4)
    l_max: int = L_MAX  # length where the penalty reaches 1 (Eq. 4)
    threshold: int = 2  # pointwise score >= threshold means "correct"
    strict_verdicts: bool = TRAINING_STRICT  # a verdict counts only after </think>, as in rejection sampling
    judge: str = ""  # a judge model folder that also rewards reasoning rollouts ("": the rule alone)
    judge_engine: Literal["vllm", "hf"] = "vllm"  # the judge's own engine
    judge_template: str = "pointwise"  # the judge's prompt template: builtin name or file
    judge_max_tokens: int = 1024  # generation limit of one judgment
    judge_temperature: float = 0.0  # the judge's sampling temperature (0: greedy)
    judge_max_model_len: int | None = None  # the judge's context (None: its config's)
    judge_weight: float = 1.0  # the judge's share of the correctness term (the rest: the rule)
    stream: bool = True  # judge rollouts while the rest still generate (false: one batch after generation)
    judge_batch: int = 64  # rollouts per judge batch when streaming (fewer: the judge starts sooner)


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
    max_tokens: int = 4096  # generation limit per judgment
    temperature: float = 0.0  # sampling temperature (0: greedy)
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

    def check(self) -> None:
        """The rules across GRPO's sections (``libra.config.check`` runs them at load)."""
        loss = self.loss
        if not 0 <= loss.eps_low < 1 or not loss.eps_high >= 0:
            raise ConfigError("config", "loss.eps_low" if not 0 <= loss.eps_low < 1 else "loss.eps_high",
                              f"the clip range needs 0 <= eps_low < 1 and eps_high >= 0, got {loss.eps_low} and "
                              f"{loss.eps_high}")
        if loss.dual_clip is not None and not loss.dual_clip > 1:
            raise ConfigError("config", "loss.dual_clip", f"must be > 1 (or null: off), got {loss.dual_clip}")
        if loss.kl_coef < 0:
            raise ConfigError("config", "loss.kl_coef", f"must be >= 0 (0: no reference model), got {loss.kl_coef}")
        P, G = self.data.prompts_per_step, self.run.global_batch_size
        if P % G:
            raise ConfigError("config", "data.prompts_per_step", f"{P} is not a multiple of run.global_batch_size={G}")
        try:
            check_thresholds(self.loss.rollout_correction, self.loss.correction_low, self.loss.correction_high)
        except ValueError as err:
            raise ConfigError("config", "loss.rollout_correction", str(err)) from None
        if self.run.max_tokens_per_micro_batch < 0:
            raise ConfigError("config", "run.max_tokens_per_micro_batch", "must be >= 0 (0: micro_batch_size rows)")
        r = self.rollout
        if r.max_staleness < 0:
            raise ConfigError("config", "rollout.max_staleness",
                              f"must be >= 0 (0: synchronous), got {r.max_staleness}")
        if r.max_staleness and r.dynamic_sampling:
            raise ConfigError("config", "rollout.dynamic_sampling",
                              "dynamic sampling decides a step's refills from the kept groups of all ranks, which the "
                              "engine's thread cannot ask for while the trainer runs its own collectives: use it with "
                              "rollout.max_staleness=0")
        if self.eval.n < 1:
            raise ConfigError("config", "eval.n", f"must be >= 1 judgments per row, got {self.eval.n}")
        if not 0 <= self.reward.judge_weight <= 1:
            raise ConfigError("config", "reward.judge_weight", f"must lie in [0, 1], got {self.reward.judge_weight}")
        if self.reward.judge_batch < 1:
            raise ConfigError("config", "reward.judge_batch", f"must be >= 1 rollouts, got {self.reward.judge_batch}")
