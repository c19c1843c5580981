"""Turning chat rows into packed training rows where each example sees only itself.

An example is ``(input_ids, loss_mask)``: the whole conversation tokenised with the chat template and a
mask that is 1 on assistant tokens only (the model learns to answer, not to write prompts). Short
examples are packed first-fit into rows of at most ``max_len`` tokens; each row carries segment ids
and per-segment positions, from which ``batch_inputs`` builds either a block-diagonal causal mask
(sdpa) or only the position ids (flash-attention varlen), so no token attends across examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from libra.data.jsonl import DataError, Record


@dataclass
class Example:
    input_ids: list[int]
    loss_mask: list[int]

    @property
    def loss_tokens(self) -> int:
        return sum(self.loss_mask[1:])  # token 0 is never a target


def chat_messages(rec: Record) -> list[dict]:
    """``messages`` (a chat with at least one assistant turn), or ``prompt`` (text or messages) plus
    ``response`` (the assistant's answer)."""
    if "messages" in rec.data:
        messages = rec.get("messages", list)
    else:
        prompt = rec.get("prompt", (str, list))
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        messages.append({"role": "assistant", "content": rec.get("response", str)})
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(rec.path, rec.line, f"messages[{i}]", "expected {'role': str, 'content': str}")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(rec.path, rec.line, "messages", "no assistant turn to learn from")
    return messages


def _ids(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def tokenize_chat(tokenizer, messages: list[dict], rec: Record | None = None) -> Example:
    """Assistant turns are found by rendering the chat prefix by prefix: the tokens a turn adds after
    the open assistant header are the ones to learn (including the end-of-turn token)."""
    ids: list[int] = []
    mask: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head = _ids(tokenizer, messages[:i], True)
        full = _ids(tokenizer, messages[:i + 1], False)
        if head[:len(ids)] != ids or full[:len(head)] != head:
            where = (rec.path, rec.line) if rec else ("<chat>", None)
            raise DataError(*where, "messages", "the chat template does not render turns as prefixes of each other")
        mask += [0] * (len(head) - len(ids)) + [1] * (len(full) - len(head))
        ids = full
    return Example(ids, mask)


def first_fit(sizes: list[int], capacity: int) -> list[list[int]]:
    """Indices of ``sizes`` in first-fit bins of total <= ``capacity``, in the given order (an item larger
    than ``capacity`` gets a bin that nothing else fits into)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i, n in enumerate(sizes):
        slot = next((b for b, r in enumerate(room) if r >= n), None)
        if slot is None:
            bins.append([i])
            room.append(capacity - n)
        else:
            bins[slot].append(i)
            room[slot] -= n
    return bins


def pack(examples: list[Example], max_len: int, packing: bool = True) -> list[list[Example]]:
    """First-fit bins of total length <= ``max_len`` (one example per bin without ``packing``); bins keep
    the examples' order so results do not depend on dictionary or hash order."""
    for ex in examples:
        if len(ex.input_ids) > max_len:
            raise ValueError(f"an example of {len(ex.input_ids)} tokens exceeds max_seq_len={max_len} "
                             "(truncate or raise the limit)")
    if not packing:
        return [[ex] for ex in examples]
    return [[examples[i] for i in b] for b in first_fit([len(ex.input_ids) for ex in examples], max_len)]


def batch_inputs(rows: list[list[Example]], pad_id: int, attn_implementation: str = "sdpa") -> dict:
    """Tensors for one micro-batch of packed rows: ``input_ids``, ``position_ids``, ``targets`` (next
    token, -100-free: masked by ``loss_mask``), ``loss_mask`` (float) and ``attention_mask``."""
    width = max(sum(len(e.input_ids) for e in row) for row in rows)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    segments = torch.full(shape, -1, dtype=torch.long)
    targets = torch.full(shape, pad_id, dtype=torch.long)
    loss_mask = torch.zeros(shape)
    for r, row in enumerate(rows):
        at = 0
        for s, ex in enumerate(row):
            n = len(ex.input_ids)
            ids = torch.tensor(ex.input_ids)
            input_ids[r, at:at + n] = ids
            position_ids[r, at:at + n] = torch.arange(n)
            segments[r, at:at + n] = s
            targets[r, at:at + n - 1] = ids[1:]
            loss_mask[r, at:at + n - 1] = torch.tensor(ex.loss_mask[1:], dtype=torch.float)
            at += n
    out = {"input_ids": input_ids, "position_ids": position_ids, "targets": targets, "loss_mask": loss_mask}
    if attn_implementation == "flash_attention_2":
        out["attention_mask"] = None  # varlen kernels split rows at position-id resets
    else:
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, :, None] >= 0)
        # padding rows attend to themselves so softmax never sees an all-masked row (no NaN)
        same |= torch.eye(width, dtype=torch.bool)
        out["attention_mask"] = (same & causal)[:, None]
    return out
