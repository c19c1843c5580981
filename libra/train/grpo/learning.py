"""Steps 4-5 of a rollout step: log-probs and the optimizer steps.

Old and reference log-probs come from ``libra_kernels.linear_token_logprobs`` on the LM head (no logits);
when the update is on-policy (one PPO epoch, one mini-batch) the old log-probs are the update pass's own,
detached, and the separate pass is skipped. Then ``loss.ppo_epochs`` passes over mini-batches of
``run.global_batch_size`` prompts, each one optimizer step on ``libra_kernels.linear_grpo_loss`` (eps 0.2 /
0.28, k3 KL 1e-3, the paper's sequence-mean aggregation; the rest of the loss family and the rollout
correction via ``loss.*``). Micro-batches are padded rows or cut by a token budget (``rl_batches.py``), and
only response-predicting positions reach the head. Losses are normalised by global counts, so a step means
the same at any world size.
"""

from __future__ import annotations

import random
import time

import torch

import libra_kernels as lk
from libra.train.grpo.config import GRPOConfig
from libra.train.grpo.rollouts import Rollout
from libra.train.rl_batches import ResponseTokens, micro_batches, packs_rows, response_tokens
from libra.train.rollout_correction import correct
from libra.train.session import TrainSession


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
        units = live if lk.AGGREGATIONS[loss_cfg.agg].unit == "token" else live_seqs
        (loss * units).backward()
        counts["live_tokens"] += live
        counts["units"] += units
        for k in sums:
            if k in stats:
                sums[k] += float(stats[k]) * live
    totals = dict(zip([*sums, *counts], session.global_sum(*sums.values(), *counts.values())))
    step = session.optimizer_step(grad_scale=world.world_size / max(totals["units"], 1.0))
    live_total, all_tokens = max(totals["live_tokens"], 1.0), max(totals["tokens"], 1.0)
    return {**step, **{k: totals[k] / live_total for k in sums}, "is_capped": totals["is_capped"] / all_tokens,
            "correction_dropped": totals["correction_dropped"] / all_tokens,
            "truncation_masked": totals["truncation_masked"] / all_tokens}


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
