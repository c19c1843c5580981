"""GRPO with clip-higher, k3 KL and the length-penalised verifiable reward: the Libra-RM recipe (paper
section 4.3 and Appendix D; defaults below are the paper's).

One rollout step:
  1. take ``prompts_per_step`` prompts from the seeded prompt stream (each rank a contiguous share);
  2. generate ``n`` rollouts per prompt with the rollout engine, which holds the current weights;
  3. score each (``is_correct - length penalty``), group advantages (``libra_kernels.group_advantages``);
     with dynamic sampling, drop groups whose rewards all agree and refill from the stream;
  4. old and reference log-probs with ``libra_kernels.linear_token_logprobs`` on the LM head (no logits);
     when the update is on-policy (one PPO epoch, one mini-batch) the old log-probs are the update
     pass's own, detached, and the separate pass is skipped;
  5. ``ppo_epochs`` passes over mini-batches of ``global_batch_size`` prompts, each one optimizer step on
     ``libra_kernels.linear_grpo_loss`` (eps 0.2 / 0.28, k3 KL 1e-3, the paper's sequence-mean aggregation;
     the rest of the loss family and the rollout correction via ``loss.*``); micro-batches are padded rows
     or cut by a token budget (``rl_batches.py``), and only response-predicting positions reach the head;
  6. push the new weights into the engine;
  7. with an ``eval`` section, judge a held-out bench with the same engine (it holds the current weights)
     before the first update, every ``eval.every`` rollout steps and at the end (``OUT/evals/step_N``).
Steps 1-3 are ``collect_rollouts``, 4-5 ``learn``. Every rank runs its own engine on its share of
prompts; losses are normalised by global counts so a step means the same at any world size. Metrics per
step: reward, accuracy, the share of groups whose rewards all agree (``uniform_groups``, before dynamic
sampling drops them), answer checks that could not finish (``check_failures``: scored as not correct, so a
rising count means rewards that judged nothing), clip fractions, ppo_kl, KL, entropy, response length,
rollout/trainer log-prob mismatch, time per stage and tokens/s, and ``eval_accuracy`` / ``eval_invalid`` on
evaluation steps.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch

import libra_kernels as lk
from libra.config import ConfigError
from libra.data.jsonl import SkipCounter
from libra.judge.verdicts import TRAINING_STRICT
from libra.rewards import L_EXP, L_MAX, length_penalty
from libra.rollout.logprob_check import logprob_mismatch
from libra.rollout.types import Engine, SamplingParams
from libra.train.config import ModelConfig, RunConfig
from libra.train.model import full_state_dict
from libra.train.judge_reward import JudgeReward
from libra.train.optim import OptimConfig
from libra.train.packing import Example
from libra.train.rl_batches import ResponseTokens, micro_batches, packs_rows, response_tokens
from libra.train.rl_tasks import TASKS, RLItem, load_rl_items, score
from libra.train.rollout_correction import Mode, check_thresholds, correct
from libra.train.session import TrainSession, load_tokenizer
from libra.verify import failure_counts


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


@dataclass
class Rollout:
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


def start_engine(cfg: GRPOConfig, seed: int):
    from libra.rollout.factory import make_engine

    with _without_torchrun_env():
        kwargs = {} if cfg.rollout.engine == "hf" else {"max_model_len": cfg.rollout.max_model_len,
                                                          "gpu_memory_utilization": cfg.rollout.gpu_memory_utilization}
        return make_engine(cfg.rollout.engine, cfg.model.path, seed=seed,
                           trust_remote_code=cfg.model.trust_remote_code, **kwargs)


EngineFactory = Callable[[GRPOConfig, int], Engine]  # (config, seed) -> a started engine


def generate_and_score(engine, items: list[RLItem], base_seed: int, cfg: GRPOConfig, first_group: int,
                       judge: JudgeReward | None = None) -> list[Rollout]:
    r, rw = cfg.rollout, cfg.reward
    params = SamplingParams(n=r.n, temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens,
                            seed=base_seed, logprobs=True)
    gens = engine.generate([it.prompt for it in items], params)
    out, texts = [], []
    for g, (item, gen) in enumerate(zip(items, gens)):
        for s in gen.samples:
            sc = score(item, s.text, len(s.token_ids), l_exp=rw.l_exp, l_max=rw.l_max, threshold=rw.threshold,
                       strict=rw.strict_verdicts)
            out.append(Rollout(first_group + g, list(gen.prompt_token_ids), list(s.token_ids), list(s.logprobs),
                               sc.reward, sc.correct, s.finish_reason == "length"))
            texts.append((item, s.text))
    judged = [i for i, (item, _) in enumerate(texts) if judge is not None and item.task == "reasoning"]
    if judged:
        verdicts = judge([texts[i][0].question for i in judged], [texts[i][1] for i in judged])
        for i, verdict in zip(judged, verdicts):
            ro = out[i]
            ro.judged = verdict
            term = rw.judge_weight * verdict + (1 - rw.judge_weight) * ro.correct
            ro.reward = term - length_penalty(len(ro.response_ids), rw.l_exp, rw.l_max)
    return out


@torch.no_grad()
def compute_logprobs(session: TrainSession, model, rollouts: list[Rollout], attr: str, temperature: float) -> None:
    """Fill ``attr`` ("old_logp" or "ref_logp") of every rollout with ``model``'s response-token log-probs
    under the sampling temperature (the distribution the engine sampled from)."""
    run = session.cfg.run
    packed = run.max_tokens_per_micro_batch > 0 and packs_rows(run.rl_layout, session.cfg.model.attn_implementation)
    batches = micro_batches(rollouts, run.micro_batch_size, run.max_tokens_per_micro_batch, packed)
    for i in range(session.passes(len(batches))):
        rows = batches[i] if i < len(batches) else []
        rt = response_tokens(session, rows, packed)
        logp = model(rt.inputs["input_ids"], lambda h, w, b: lk.linear_token_logprobs(
            rt.gather(h), w, rt.targets, bias=b, temperature=temperature),
            attention_mask=rt.inputs["attention_mask"], position_ids=rt.inputs["position_ids"])
        for row, values in zip(rows, rt.split(logp)):
            setattr(row, attr, values)


UPDATE_STATS = ("clipfrac_high", "clipfrac_low", "ppo_kl", "kl", "entropy")
UPDATE_COUNTS = ("tokens", "live_tokens", "units", "is_capped", "correction_dropped", "truncation_masked")


def _loss_inputs(cfg: GRPOConfig, rt: ResponseTokens, rows: list[Rollout], old: torch.Tensor, counts: dict):
    """(mask, advantages) per response token [1, n] for the loss: truncated completions masked when
    ``loss.mask_truncated``; then the rollout correction from ``old`` (trainer) against the engine's
    sampling log-probs: advantages reweighted, tokens dropped. Adds the token counts to ``counts``."""
    loss_cfg = cfg.loss
    mask = rt.cat([[0.0 if loss_cfg.mask_truncated and r.truncated else 1.0] * len(r.response_ids) for r in rows])
    adv = rt.cat([[r.advantage] * len(r.response_ids) for r in rows])
    counts["tokens"] += 0 if rt.idle else mask.numel()
    counts["truncation_masked"] += 0 if rt.idle else float((mask == 0).sum())
    if loss_cfg.rollout_correction != "none" and not rt.idle:
        c = correct(loss_cfg.rollout_correction, old[0], rt.cat([r.engine_logp for r in rows])[0], rt.segments[0],
                    low=loss_cfg.correction_low, high=loss_cfg.correction_high)
        counts["is_capped"] += c.capped
        counts["correction_dropped"] += float(((c.keep == 0) & (mask[0] > 0)).sum())
        mask, adv = mask * c.keep[None], adv * c.weights[None]
    return mask, adv


def update(session: TrainSession, cfg: GRPOConfig, mini: list[Rollout], on_policy: bool) -> dict:
    """One optimizer step on a mini-batch of rollouts (this rank's share).

    ``on_policy`` (one PPO epoch, one mini-batch per rollout step): the weights have not moved since the
    rollouts were sampled, so the old log-probs are this pass's own, detached, and no separate old-log-prob
    pass is needed. The loss then runs ``linear_token_logprobs`` + ``grpo_loss`` (still no logits), and
    the pass's log-probs are kept as each rollout's ``old_logp`` for the mismatch metric.

    Normalisation: each micro-batch's loss is the kernel's aggregate over its own live (unmasked) tokens
    or sequences, times that count ("units"); after the last micro-batch the gradient is divided by the
    global count, known only then (masks can come from this very pass), so a token masked by truncation
    or rollout correction leaves every denominator and a step means the same at any world size and any
    micro-batch layout."""
    world, model, loss_cfg, run = session.world, session.model, cfg.loss, cfg.run
    packed = run.max_tokens_per_micro_batch > 0 and packs_rows(run.rl_layout, cfg.model.attn_implementation)
    batches = micro_batches(mini, run.micro_batch_size, run.max_tokens_per_micro_batch, packed)
    n = session.passes(len(batches))
    sums = dict.fromkeys(UPDATE_STATS, 0.0)
    counts = dict.fromkeys(UPDATE_COUNTS, 0.0)
    kernel_kw = dict(eps_low=loss_cfg.eps_low, eps_high=loss_cfg.eps_high, dual_clip=loss_cfg.dual_clip,
                     kl_coef=loss_cfg.kl_coef, kl_kind=loss_cfg.kl_kind, agg=loss_cfg.agg,
                     norm_len=loss_cfg.norm_len or cfg.rollout.max_tokens, ratio_level=loss_cfg.ratio_level)
    temperature = cfg.rollout.temperature
    for i in range(n):
        session.sync_gradients(i == n - 1)
        rows = batches[i] if i < len(batches) else []
        rt = response_tokens(session, rows, packed)
        ref = rt.cat([r.ref_logp for r in rows]) if loss_cfg.kl_coef > 0 else None

        if on_policy:
            def head(h, w, b):
                logp, entropy = lk.linear_token_logprobs(rt.gather(h), w, rt.targets, bias=b,
                                                         temperature=temperature, return_entropy=True)
                old = logp.detach()
                mask, adv = _loss_inputs(cfg, rt, rows, old, counts)
                loss, stats = lk.grpo_loss(logp, old, adv, mask, ref_logp=ref, segment_ids=rt.segments, **kernel_kw)
                stats["entropy"] = float((entropy.detach() * mask).sum() / mask.sum().clamp(min=1))
                for row, values in zip(rows, rt.split(old)):
                    row.old_logp = values
                return loss, stats, mask
        else:
            old = rt.cat([r.old_logp for r in rows])
            mask, adv = _loss_inputs(cfg, rt, rows, old, counts)

            def head(h, w, b):
                loss, stats = lk.linear_grpo_loss(rt.gather(h), w, rt.targets, old, adv, mask, bias=b, ref_logp=ref,
                                                  temperature=temperature, return_entropy=True,
                                                  segment_ids=rt.segments, **kernel_kw)
                return loss, stats, mask

        loss, stats, mask = model(rt.inputs["input_ids"], head, attention_mask=rt.inputs["attention_mask"],
                                  position_ids=rt.inputs["position_ids"])
        live = float(mask.sum())
        live_seqs = 0 if rt.idle else int(torch.zeros(len(rows)).index_add_(
            0, rt.segments[0].cpu(), mask[0].cpu()).gt(0).sum())
        units = live if loss_cfg.agg == "token-mean" else live_seqs
        (loss * units).backward()
        counts["live_tokens"] += live
        counts["units"] += units
        for k in sums:
            if k in stats:
                sums[k] += float(stats[k]) * live
    totals = dict(zip([*sums, *counts], session.global_sum(*sums.values(), *counts.values())))
    step = session.optimizer_step(grad_scale=world.world_size / max(totals["units"], 1.0))
    live_total, all_tokens = max(totals["live_tokens"], 1.0), max(totals["tokens"], 1.0)
    return {**step, **{k: totals[k] / live_total for k in sums},
            "is_capped": totals["is_capped"] / all_tokens, "correction_dropped": totals["correction_dropped"] / all_tokens,
            "truncation_masked": totals["truncation_masked"] / all_tokens}


def _uniform(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """Per group of ``n`` consecutive rollouts: whether all rewards agree (no learning signal)."""
    return rewards.float().view(-1, n).std(dim=1, unbiased=False) == 0


def _select(rollouts: list[Rollout], n: int, dynamic: bool, scale: bool = True) -> list[Rollout]:
    """Group advantages (divided by the group's std when ``scale``); with dynamic sampling, only groups
    whose rewards differ are kept."""
    if not rollouts:
        return []
    rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
    adv = lk.group_advantages(rewards, n, scale=scale)
    for r, a in zip(rollouts, adv.tolist()):
        r.advantage = a
    if not dynamic:
        return rollouts
    uniform = _uniform(rewards, n)
    return [r for i, r in enumerate(rollouts) if not uniform[i // n]]


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
        kept += _select(batch, n, cfg.rollout.dynamic_sampling, cfg.loss.scale_advantages)
        (global_kept,) = session.global_sum(len(kept) // n)
        if not cfg.rollout.dynamic_sampling or global_kept >= P:
            break
    rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
    uniform = int(_uniform(rewards, n).sum()) if rollouts else 0
    failed = sum(failure_counts().values()) - failed_before
    groups, uniform, failed = session.global_sum(len(rollouts) // n, uniform, failed)
    return RolloutStep(rollouts, kept, int(groups), int(uniform), int(failed))


def learn(session: TrainSession, cfg: GRPOConfig, kept: list[Rollout], reference) -> tuple[list[dict], float]:
    """Steps 4-5: old (unless on-policy) and reference log-probs, then ``ppo_epochs`` passes over
    mini-batches of ``global_batch_size`` prompts, one optimizer step each. Returns the update stats and
    the seconds spent on the log-prob passes."""
    P, G = cfg.data.prompts_per_step, cfg.run.global_batch_size
    tick = time.perf_counter()
    on_policy = cfg.loss.ppo_epochs == 1 and P == G
    session.model.eval()
    if not on_policy:
        compute_logprobs(session, session.model, kept, "old_logp", cfg.rollout.temperature)
    if reference is not None:
        compute_logprobs(session, reference, kept, "ref_logp", cfg.rollout.temperature)
    logprob_s = time.perf_counter() - tick
    session.model.train()
    groups = sorted({r.group for r in kept})
    rng = random.Random(cfg.run.seed * 7919 + session.step)
    stats = []
    for _ in range(cfg.loss.ppo_epochs):
        rng.shuffle(groups)
        for part in (set(groups[i::P // G]) for i in range(P // G)):
            if session.done:  # run.max_steps inside a rollout step: stop there, never overshoot
                return stats, logprob_s
            stats.append(update(session, cfg, [r for r in kept if r.group in part], on_policy))
    return stats, logprob_s


class HeldOutEval:
    """The ``eval`` section at work: the bench rows loaded (and the template checked) before the engine
    starts, then ``libra.eval.libra_bench.evaluate`` on the rollout engine at the steps it asks for."""

    def __init__(self, session: TrainSession, cfg: GRPOConfig, updates_per_step: int):
        self.cfg, self.session, self.per_step = cfg, session, updates_per_step
        self.enabled = bool(cfg.eval.bench) and cfg.eval.every > 0
        if cfg.eval.n < 1:
            raise ConfigError("config", "eval.n", f"must be >= 1 judgments per row, got {cfg.eval.n}")
        self.rows: list[dict] = []
        if self.enabled and session.world.is_main:
            from libra.data.bench import load_bench
            from libra.eval.libra_bench import check_template

            self.rows = load_bench(cfg.eval.bench)
            if not self.rows:
                raise ConfigError(cfg.eval.bench, "eval.bench", "no judging rows")
            try:
                check_template(cfg.eval.template, self.rows)
            except ValueError as err:
                raise ConfigError("config", "eval.template", str(err)) from None
        run = {k: v for k, v in asdict(cfg).items() if k != "eval"}
        from libra.eval.rundir import content_key

        self.run_key = content_key(run)

    def due(self, *, first: bool = False) -> bool:
        """Before the first update (``first``), every ``every`` rollout steps, and at the end."""
        if not self.enabled:
            return False
        rollout_step = self.session.step // self.per_step
        return first or self.session.done or rollout_step % self.cfg.eval.every == 0

    def __call__(self, engine) -> dict:
        """Rank 0 evaluates (the others go on to their next collective and wait there); returns the
        metrics for metrics.jsonl on rank 0, an empty dict elsewhere."""
        if not self.session.world.is_main:
            return {}
        from libra.eval.libra_bench import evaluate

        e, step = self.cfg.eval, self.session.step
        params = SamplingParams(n=e.n, temperature=e.temperature, max_tokens=e.max_tokens, seed=self.cfg.run.seed)
        results = evaluate(self.rows, out=Path(self.cfg.run.out) / "evals" / f"step_{step:08d}", sampling=params,
                           model=self.cfg.model.path, engine=engine, template=e.template,
                           threshold=self.cfg.reward.threshold,  # "correct" as the reward reads a score
                           fingerprint=f"grpo-run:{self.run_key}:step:{step}", verdict_mode=e.verdict_mode,
                           progress=False, plots=False, quiet=True, name=f"step {step}", bench=e.bench,
                           settings={"eval": asdict(e), "step": step})
        m = results["metrics"]
        return {"eval_accuracy": m["accuracy"], "eval_average": m["average"], "eval_invalid": m["invalid_rate"]}


def start_judge(cfg: GRPOConfig) -> Engine:
    """The judge engine of ``reward.judge`` (outside the trainer's process group, like the rollout engine)."""
    from libra.rollout.factory import make_engine

    rw = cfg.reward
    with _without_torchrun_env():
        kwargs = {} if rw.judge_engine == "hf" else {"max_model_len": rw.judge_max_model_len,
                                                     "gpu_memory_utilization": cfg.rollout.gpu_memory_utilization / 2}
        return make_engine(rw.judge_engine, rw.judge, seed=cfg.run.seed, trust_remote_code=cfg.model.trust_remote_code,
                           **kwargs)


def _judge_reward(cfg: GRPOConfig, judge_factory: Callable[[GRPOConfig], Engine] | None) -> JudgeReward | None:
    rw = cfg.reward
    if not rw.judge:
        return None
    from libra.models.checks import check_model_dir

    check_model_dir(rw.judge)
    if not 0 <= rw.judge_weight <= 1:
        raise ConfigError("config", "reward.judge_weight", f"must lie in [0, 1], got {rw.judge_weight}")
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


def train_grpo(cfg: GRPOConfig, *, engine_factory: EngineFactory | None = None,
               judge_factory: Callable[[GRPOConfig], Engine] | None = None) -> None:
    """``engine_factory(cfg, seed)`` starts the rollout engine (default ``start_engine``: vLLM or
    transformers as ``rollout.engine`` says); benchmarks pass their own to time or count it.
    ``judge_factory(cfg)`` starts the judge of ``reward.judge`` (default ``start_judge``)."""
    tokenizer = load_tokenizer(cfg)
    skipped = SkipCounter() if cfg.data.skip_bad else None
    items = load_rl_items(cfg.data.train, cfg.data.task, cfg.data.template, skipped)
    P, G = cfg.data.prompts_per_step, cfg.run.global_batch_size
    if not items:
        raise ConfigError(cfg.data.train, "data.train", "no usable prompts")
    if P % G:
        raise ConfigError("config", "data.prompts_per_step", f"{P} is not a multiple of run.global_batch_size={G}")
    try:
        check_thresholds(cfg.loss.rollout_correction, cfg.loss.correction_low, cfg.loss.correction_high)
    except ValueError as err:
        raise ConfigError("config", "loss.rollout_correction", str(err)) from None
    if cfg.run.max_tokens_per_micro_batch < 0:
        raise ConfigError("config", "run.max_tokens_per_micro_batch", "must be >= 0 (0: micro_batch_size rows)")
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
        judge = _judge_reward(cfg, judge_factory)
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
