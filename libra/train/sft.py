"""Supervised fine-tuning on chat rows (the rejection-sampled judgments, and non-judging data).

Paper recipe (Appendix D): global batch 256, 3 epochs, AdamW, lr 1e-5 decayed to 1e-6, warmup 0.03,
gradient clip 1.0: the defaults below. The loss is the mean negative log-likelihood over the assistant
tokens of the whole global batch: each rank scales its token sum by ``world / global tokens`` and FSDP
averages gradients over ranks, so a step means the same at any world size and with any packing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

import libra_kernels as lk
from libra.config import ConfigError
from libra.data.jsonl import DataError, SkipCounter, read_jsonl, reject
from libra.train.config import ModelConfig, RunConfig
from libra.train.optim import OptimConfig
from libra.train.packing import Example, chat_messages, pack, tokenize_chat
from libra.train.session import TrainSession, load_tokenizer


@dataclass
class SFTDataConfig:
    train: str = ""  # JSONL chat rows: {"messages": [...]} or {"prompt": ..., "response": ...}
    max_seq_len: int = 2048  # tokens per example; a longer example is an error naming its file and line
    packing: bool = True  # several examples per row up to max_seq_len (attention kept within each example)
    epochs: int = 3  # passes over the training rows
    skip_bad: bool = False  # skip malformed or too-long rows (counted and reported) instead of stopping


@dataclass
class SFTConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, min_lr=1e-6, schedule="cosine"))
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/sft"))


def load_examples(path: str, tokenizer, max_len: int, skip_bad: SkipCounter | None) -> list[Example]:
    examples = []
    for rec in read_jsonl(path, skip_bad=skip_bad):
        try:
            ex = tokenize_chat(tokenizer, chat_messages(rec), rec)
            if len(ex.input_ids) > max_len:
                raise DataError(rec.path, rec.line, "messages",
                                f"{len(ex.input_ids)} tokens exceed data.max_seq_len={max_len}")
            if ex.loss_tokens == 0:
                raise DataError(rec.path, rec.line, "messages", "the assistant turns are empty")
        except DataError as err:
            reject(err, skip_bad)
            continue
        examples.append(ex)
    return examples


def step_indices(step: int, n: int, global_batch: int, seed: int) -> list[int]:
    """The examples of optimizer step ``step``: consecutive slices of a per-epoch seeded permutation
    (the last partial batch of an epoch is dropped so every step has the same size)."""
    per_epoch = n // global_batch
    epoch, k = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    return order[k * global_batch:(k + 1) * global_batch].tolist()


def train_sft(cfg: SFTConfig) -> None:
    tokenizer = load_tokenizer(cfg)
    skipped = SkipCounter() if cfg.data.skip_bad else None
    examples = load_examples(cfg.data.train, tokenizer, cfg.data.max_seq_len, skipped)
    batch = cfg.run.global_batch_size
    if len(examples) < batch:
        raise ConfigError(cfg.data.train, "run.global_batch_size", f"{len(examples)} usable rows, fewer than {batch}")
    total = (len(examples) // batch) * cfg.data.epochs
    total = min(total, cfg.run.max_steps) if cfg.run.max_steps else total
    with TrainSession(cfg, total_steps=total, desc="sft", tokenizer=tokenizer) as session:
        world, model = session.world, session.model
        if session.resumed_from is None and skipped is not None and world.is_main and skipped.skipped:
            print(f"skipped {skipped.skipped} bad rows, e.g. {skipped.examples[0]}")
        model.train()
        while not session.done:
            t0 = time.perf_counter()
            chosen = step_indices(session.step, len(examples), batch, cfg.run.seed)
            mine = [examples[i] for i in chosen[world.rank::world.world_size]]
            bins = pack(mine, cfg.data.max_seq_len, cfg.data.packing)
            micro = [bins[i:i + cfg.run.micro_batch_size] for i in range(0, len(bins), cfg.run.micro_batch_size)]
            n_micro = session.passes(len(micro))
            local_tokens = sum(ex.loss_tokens for ex in mine)
            seq_tokens = sum(len(ex.input_ids) for ex in mine)
            global_tokens, global_seq_tokens = session.global_sum(local_tokens, seq_tokens)
            t1 = time.perf_counter()
            nll_sum = 0.0
            for i in range(n_micro):
                session.sync_gradients(i == n_micro - 1)
                inputs = session.batch(micro[i] if i < len(micro) else None)  # idle rank: zero-weight pass
                logp = model(inputs["input_ids"],
                             lambda h, w, b: lk.linear_token_logprobs(h, w, inputs["targets"], bias=b),
                             attention_mask=inputs["attention_mask"], position_ids=inputs["position_ids"])
                token_nll = -(logp * inputs["loss_mask"]).sum()
                (token_nll * (world.world_size / global_tokens)).backward()
                nll_sum += float(token_nll.detach())
            t2 = time.perf_counter()
            step_stats = session.optimizer_step()
            t3 = time.perf_counter()
            (loss_sum,) = session.global_sum(nll_sum)
            session.logger.log(session.step, {
                "loss": loss_sum / global_tokens, **step_stats, "loss_tokens": global_tokens,
                "epoch": (session.step - 1) // (len(examples) // batch), "time_data": t1 - t0,
                "time_fwd_bwd": t2 - t1, "time_optim": t3 - t2, "tokens_per_s": global_seq_tokens / (t3 - t0)})
            session.maybe_save({"examples": len(examples)})
        session.finish({"examples": len(examples)})
