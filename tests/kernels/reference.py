"""Float64 reference implementations of the libra_kernels API, written straight from the spec.

Deliberately naive: everything is materialised in float64 so the kernels have an unambiguous target.
"""
import torch


def token_logprobs(logits, targets, temperature=1.0):
    """(logp, entropy) of softmax(logits / temperature); 0 * log 0 counts as 0 (for -inf logits)."""
    logprobs = torch.log_softmax(logits.double() / temperature, dim=-1)
    logp = logprobs.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    probs = logprobs.exp()
    entropy = -(probs * logprobs.masked_fill(probs == 0, 0.0)).sum(-1)
    return logp, entropy


def linear_logits(hidden, weight, bias=None):
    logits = hidden.double() @ weight.double().T
    return logits if bias is None else logits + bias.double()


def kl_penalty(logp, ref_logp, kind="k3"):
    diff = logp.double() - ref_logp.double()
    if kind == "k1":
        return diff
    if kind == "k2":
        return 0.5 * diff.square()
    if kind == "abs":
        return diff.abs()
    if kind == "k3":
        x = (-diff).clamp(-20, 20)
        return (x.exp() - x - 1).clamp(-10, 10)
    raise ValueError(f"unknown kind {kind!r}")


def masked_mean(values, mask):
    """Mean over the unmasked entries, 0 (still differentiable) when there are none."""
    mask = mask.bool()
    return torch.where(mask, values.double(), 0.0).sum() / mask.sum().clamp(min=1)


def sequences_of(mask, segment_ids=None):
    """One boolean [B, T] selector per sequence: each row, or each distinct segment id."""
    if segment_ids is None:
        rows = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)
        return [rows == b for b in range(mask.shape[0])]
    return [segment_ids == s for s in torch.unique(segment_ids).tolist()]


def aggregate(token_loss, mask, agg, segment_ids=None, norm_len=None):
    """The aggregations written out sequence by sequence (a Python loop, no weights)."""
    mask = mask.bool()
    if agg == "token-mean":
        return masked_mean(token_loss, mask)
    per_seq = []
    for sel in sequences_of(mask, segment_ids):
        live = sel & mask
        if not live.any():
            continue
        total = torch.where(live, token_loss, 0.0).sum()
        if agg == "seq-mean-token-mean":
            total = total / live.sum()
        elif agg == "seq-mean-token-sum-norm":
            total = total / norm_len
        elif agg != "seq-mean-token-sum":
            raise ValueError(f"unknown agg {agg!r}")
        per_seq.append(total)
    return torch.stack(per_seq).mean() if per_seq else token_loss.sum() * 0.0


def sequence_ratios(logp, old_logp, mask, segment_ids=None):
    """GSPO: per token, exp(mean over its sequence's unmasked tokens of (logp - old)), differentiable
    through that mean (GSPO's own gradient, which GSPO-token's equals for per-sequence advantages)."""
    log_ratio = torch.zeros_like(logp)
    for sel in sequences_of(mask, segment_ids):
        live = sel & mask.bool()
        if live.any():
            mean = (logp - old_logp)[live].mean()
            log_ratio = torch.where(sel, mean, log_ratio)
    return log_ratio


def grpo_loss(logp, old_logp, advantages, mask, ref_logp=None, eps_low=0.2, eps_high=0.28,
              dual_clip=None, kl_coef=0.0, kl_kind="k3", agg="seq-mean-token-mean", segment_ids=None, norm_len=None,
              ratio_level="token"):
    logp, old_logp = logp.double(), old_logp.double()
    adv = advantages.double()
    adv = adv.unsqueeze(-1).expand_as(logp) if adv.dim() == 1 else adv
    log_ratio = logp - old_logp if ratio_level == "token" else sequence_ratios(logp, old_logp, mask, segment_ids)
    ratio = log_ratio.clamp(-20, 20).exp()
    token_loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps_low, 1 + eps_high))
    if dual_clip is not None:
        token_loss = torch.where(adv < 0, torch.minimum(token_loss, -adv * dual_clip), token_loss)
    stats = {
        "clipfrac_high": masked_mean((adv > 0) & (ratio > 1 + eps_high), mask),
        "clipfrac_low": masked_mean((adv < 0) & (ratio < 1 - eps_low), mask),
        "ppo_kl": masked_mean(-log_ratio, mask),
    }
    if ref_logp is not None:
        kl = kl_penalty(logp, ref_logp, kl_kind)
        stats["kl"] = masked_mean(kl, mask)
        token_loss = token_loss + kl_coef * kl
    return aggregate(token_loss, mask, agg, segment_ids, norm_len), {k: v.detach() for k, v in stats.items()}


def linear_grpo_loss(hidden, weight, targets, old_logp, advantages, mask, bias=None,
                     temperature=1.0, **options):
    logp, entropy = token_logprobs(linear_logits(hidden, weight, bias), targets, temperature)
    loss, stats = grpo_loss(logp, old_logp, advantages, mask, **options)
    stats["entropy"] = masked_mean(entropy, mask).detach()
    return loss, stats


def group_advantages(rewards, group_size, scale=True, eps=1e-6):
    """verl's GRPO outcome advantage; a group of one gets mean 0 and std 1."""
    groups = rewards.double().reshape(-1, group_size)
    if group_size == 1:
        mean, std = torch.zeros_like(groups), torch.ones_like(groups)
    else:
        mean, std = groups.mean(-1, keepdim=True), groups.std(-1, keepdim=True)
    centered = groups - mean
    return (centered / (std + eps) if scale else centered).flatten()
