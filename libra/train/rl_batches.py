"""Micro-batches for the RL log-prob and update passes, and the response-only view the LM head sees.

Layouts of the same rollouts (each ``prompt + response`` token ids):
* padded: ``run.micro_batch_size`` rollouts per micro-batch, one row each, padded to the longest;
* with ``run.max_tokens_per_micro_batch`` = N the work per micro-batch is bounded by tokens, not by a count
  of sequences, in one of two ways (``run.rl_layout``):
  - packed: rollouts packed first-fit-decreasing into micro-batches of at most N tokens, concatenated into
    one row (position ids restart per rollout; flash-attention varlen splits at the resets, sdpa gets a
    block-diagonal causal mask): no padding at all;
  - bucketed: rollouts sorted by length, each micro-batch as many rows as fit rows x longest <= N: almost
    no padding, and attention only within a row. With sdpa this is the faster one: its masked kernel
    computes every (query, key) pair of a packed row, masked or not, so a row of k rollouts pays ~k times
    the attention of their separate rows (measured in ``bench_perf.rl_packing``).
  ``auto`` (default) packs with flash-attention and buckets with sdpa.
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

from libra.train.packing import Example, first_fit


class HasTokens(Protocol):
    prompt_ids: list[int]
    response_ids: list[int]

    def example(self) -> Example: ...


LAYOUTS = ("auto", "packed", "bucketed")


def packs_rows(layout: str, attn_implementation: str) -> bool:
    """Whether token-budget micro-batches are one packed row (else padded rows of similar length)."""
    return layout == "packed" or (layout == "auto" and attn_implementation == "flash_attention_2")


def micro_batches(rollouts: Sequence[HasTokens], size: int, max_tokens: int = 0, packed: bool = True) -> list[list]:
    """``size`` rollouts per micro-batch (``max_tokens`` 0); else first-fit-decreasing bins of at most
    ``max_tokens`` tokens (``packed``) or length-sorted rows with rows x longest <= ``max_tokens``; a
    rollout longer than the budget gets a micro-batch of its own (it must still be learned from)."""
    if not max_tokens:
        return [list(rollouts[i:i + size]) for i in range(0, len(rollouts), size)]
    order = sorted(range(len(rollouts)), key=lambda i: -_length(rollouts[i]))
    if not packed:
        buckets: list[list[int]] = []
        for i in order:  # longest first: a bucket's first rollout sets its row width
            if buckets and (len(buckets[-1]) + 1) * _length(rollouts[buckets[-1][0]]) <= max_tokens:
                buckets[-1].append(i)
            else:
                buckets.append([i])
        return [[rollouts[i] for i in sorted(b)] for b in buckets]
    bins = [[order[j] for j in b] for b in first_fit([_length(rollouts[i]) for i in order], max_tokens)]
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
