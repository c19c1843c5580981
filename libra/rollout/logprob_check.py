"""The rollout/trainer log-prob check: how far the engine's sampling log-probs are from the trainer's.

GRPO's importance ratio divides the trainer's probability of a sampled token by the rollout engine's.
Both should be the same number for the same weights; a gap means stale weights (a failed or partial
sync), a different temperature convention or numerical drift (bf16 kernels), and it silently biases
the update. The trainer logs :func:`logprob_mismatch` every step; :func:`sequence_logprobs` is the
trainer-side computation, on the same fused kernel the loss uses.
"""

from __future__ import annotations

from typing import Sequence

import torch

import libra_kernels as lk


def _output_embeddings_weight(model) -> torch.Tensor:
    head = model.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise ValueError("sequence_logprobs needs a causal LM whose output layer is a bias-free linear head")
    return head.weight


@torch.no_grad()
def sequence_logprobs(model, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *,
                      temperature: float = 1.0) -> list[torch.Tensor]:
    """Log-prob of every response token under ``softmax(logits / temperature)`` of a transformers causal LM,
    one fp32 tensor per (prompt, response) pair. The batch is right-padded with an attention mask; the
    logits are never materialised (``lk.linear_token_logprobs`` on the final hidden states)."""
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use 1.0 for greedy samples), got {temperature}")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token (the first response token is predicted from it)")
    seqs = [list(p) + list(r) for p, r in zip(prompt_ids, response_ids)]
    device = next(model.parameters()).device
    width = max(map(len, seqs))
    input_ids = torch.zeros(len(seqs), width, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, seq in enumerate(seqs):
        input_ids[row, :len(seq)] = torch.tensor(seq)
        attention[row, :len(seq)] = 1
    hidden = model.get_decoder()(input_ids=input_ids.to(device), attention_mask=attention.to(device)).last_hidden_state
    weight = _output_embeddings_weight(model)
    # Position t predicts token t + 1: targets are the inputs shifted left (the last column is never used).
    targets = torch.roll(input_ids, -1, dims=1).to(device)
    logp = lk.linear_token_logprobs(hidden, weight, targets, temperature=temperature).cpu()
    return [logp[row, len(p) - 1:len(p) - 1 + len(r)] for row, (p, r) in enumerate(zip(prompt_ids, response_ids))]


def logprob_mismatch(rollout: Sequence[Sequence[float] | torch.Tensor],
                     trainer: Sequence[Sequence[float] | torch.Tensor]) -> dict[str, float | int]:
    """Per-token gap between rollout and trainer log-probs over all sequences: ``mean_abs``, ``max_abs``,
    ``mean_signed`` (rollout - trainer; positive means the engine is over-confident) and ``tokens``."""
    if len(rollout) != len(trainer):
        raise ValueError(f"{len(rollout)} rollout sequences but {len(trainer)} trainer sequences")
    diffs = []
    for i, (a, b) in enumerate(zip(rollout, trainer)):
        a = torch.as_tensor(a, dtype=torch.float64).flatten()
        b = torch.as_tensor(b, dtype=torch.float64).flatten().to(a.device)
        if a.numel() != b.numel():
            raise ValueError(f"sequence {i}: {a.numel()} rollout log-probs but {b.numel()} trainer log-probs")
        diffs.append(a - b)
    diff = torch.cat(diffs) if diffs else torch.zeros(0, dtype=torch.float64)
    if diff.numel() == 0:
        return {"mean_abs": 0.0, "max_abs": 0.0, "mean_signed": 0.0, "tokens": 0}
    return {"mean_abs": diff.abs().mean().item(), "max_abs": diff.abs().max().item(),
            "mean_signed": diff.mean().item(), "tokens": diff.numel()}
