"""Micro-batches for the RL log-prob and update passes, and the response-only view the LM head sees.

Two layouts of the same rollouts (each ``prompt + response`` token ids):
* padded: ``run.micro_batch_size`` rollouts per micro-batch, one row each, padded to the longest;
* packed: with ``run.max_tokens_per_micro_batch`` = N, rollouts are packed first-fit-decreasing into
  micro-batches of at most N tokens, concatenated into one row (position ids restart per rollout; sdpa gets a
  block-diagonal causal mask, flash-attention varlen splits at the position resets), so no pass computes
  padding and the work per micro-batch is bounded by tokens, not by a count of sequences.
Either way only the positions that predict a response token reach the LM-head kernels: their hidden states
are gathered into one [1, n_tokens, H] row with ``segments`` saying which rollout each belongs to (the
kernels' ``segment_ids``), so prompt positions never cost a vocabulary projection. The per-token order is
the rollouts' order and, within one, the response order, so per-rollout values (old, reference and engine
log-probs) are simply concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from libra.train.packing import Example


class HasTokens(Protocol):
    prompt_ids: list[int]
    response_ids: list[int]

    def example(self) -> Example: ...


def micro_batches(rollouts: Sequence[HasTokens], size: int, max_tokens: int = 0) -> list[list]:
    """``size`` rollouts per micro-batch (``max_tokens`` 0), or first-fit-decreasing bins of at most
    ``max_tokens`` tokens (a longer rollout gets a bin of its own: it must still be learned from)."""
    if not max_tokens:
        return [list(rollouts[i:i + size]) for i in range(0, len(rollouts), size)]
    order = sorted(range(len(rollouts)), key=lambda i: -_length(rollouts[i]))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = _length(rollouts[i])
        slot = next((b for b, r in enumerate(room) if r >= n), None)
        if slot is None:
            bins.append([i])
            room.append(max_tokens - n)
        else:
            bins[slot].append(i)
            room[slot] -= n
    return [[rollouts[i] for i in sorted(b)] for b in bins]  # rollout order inside a bin: reproducible


def _length(rollout: HasTokens) -> int:
    return len(rollout.prompt_ids) + len(rollout.response_ids)


@dataclass
class ResponseTokens:
    """One micro-batch's model inputs and the response-token view of them (flat order, see above)."""

    inputs: dict  # input_ids, position_ids, attention_mask (TrainSession.batch)
    positions: torch.Tensor  # [n] indices into the flattened [B * T] positions that predict a response token
    targets: torch.Tensor  # [1, n] the response tokens
    segments: torch.Tensor  # [1, n] which rollout of the micro-batch each token belongs to
    lengths: list[int]  # response tokens per rollout
    idle: bool  # no rollouts here (an idle rank's pass): one position, masked

    def gather(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, T, H] final hidden states -> [1, n, H] at the response-predicting positions."""
        return hidden.reshape(-1, hidden.shape[-1]).index_select(0, self.positions)[None]

    def cat(self, per_rollout: Sequence[Sequence[float] | torch.Tensor]) -> torch.Tensor:
        """Per-rollout values (one per response token) -> [1, n] fp32 on the batch's device."""
        device = self.targets.device
        if self.idle:
            return torch.zeros(1, 1, device=device)
        return torch.cat([torch.as_tensor(v, dtype=torch.float32) for v in per_rollout]).to(device)[None]

    def split(self, values: torch.Tensor) -> list[torch.Tensor]:
        """[1, n] -> one fp32 CPU tensor per rollout."""
        return [] if self.idle else list(values[0].detach().float().cpu().split(self.lengths))


def response_tokens(session, rollouts: Sequence[HasTokens], packed: bool) -> ResponseTokens:
    """The micro-batch's inputs (padded rows, or one packed row) and its response-token view."""
    examples = [r.example() for r in rollouts]
    x = session.batch(([examples] if packed else [[e] for e in examples]) if examples else None)
    mask = x["loss_mask"].reshape(-1)
    positions = mask.nonzero().squeeze(1)
    lengths = [len(r.response_ids) for r in rollouts]
    if positions.numel() != sum(lengths):
        raise ValueError(f"{positions.numel()} response positions for {sum(lengths)} response tokens "
                         "(a rollout with an empty prompt?)")
    idle = not examples or positions.numel() == 0
    if idle:  # the kernels still run (FSDP needs every rank in the collectives): one masked position
        positions = torch.zeros(1, dtype=torch.long, device=mask.device)
    segments = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths, dtype=torch.long)) \
        if not idle else torch.zeros(1, dtype=torch.long)
    return ResponseTokens(inputs={k: x[k] for k in ("input_ids", "position_ids", "attention_mask")},
                          positions=positions, targets=x["targets"].reshape(-1)[positions][None],
                          segments=segments.to(mask.device)[None], lengths=lengths, idle=idle)
