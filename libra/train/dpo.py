"""DPO on pairs labelled by a reward model: the paper's downstream study (section 6).

Pairs: per query, responses the RM judged correct are matched with ones it judged wrong, as many pairs
as the smaller count (``libra.data.pairs``; ``libra data dpo-pairs`` writes them from a judge's predictions).
Defaults are the paper's: beta 0.01, global batch 256 pairs, 3 epochs, lr 1e-6.

The reference log-probs are computed once, with the kernels, by the initial model before the first
update, and stored in the run directory (``reference_logps.json``): a resumed run must not take its
already-trained weights for the reference. The file is keyed by content (the initial model's weights
fingerprint and a digest of the tokenised pairs): a rerun with other pairs or another initial model into
the same directory recomputes it before training, and refuses to go on once training has started.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F

import libra_kernels as lk
from libra.config import ConfigError
from libra.data.jsonl import DataError, Record, SkipCounter, read_jsonl, reject
from libra.train.config import ModelConfig, RunConfig
from libra.train.optim import OptimConfig
from libra.train.packing import Example, tokenize_chat
from libra.train.session import TrainSession, load_tokenizer
from libra.train.sft import step_indices


@dataclass
class DPODataConfig:
    train: str = ""  # JSONL pairs: {"prompt": str | messages, "chosen": str, "rejected": str}
    max_seq_len: int = 4096  # tokens of prompt plus response, per side; a longer pair is an error naming its line
    epochs: int = 3  # passes over the pairs (the paper: 3)
    skip_bad: bool = False  # skip malformed or too-long pairs (counted and reported) instead of stopping


@dataclass
class DPOConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DPODataConfig = field(default_factory=DPODataConfig)
    beta: float = 0.01  # DPO's inverse temperature on the policy/reference log-ratio margin (the paper: 0.01)
    # Weight of the chosen response's mean token NLL added to the DPO loss (RPO: Pang et al. 2024, iterative
    # reasoning preference optimisation). Plain DPO can lower the chosen responses' likelihood along with the
    # rejected ones'; the NLL term holds it up. 0 is the paper's DPO.
    nll_coef: float = 0.0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, schedule="cosine", min_lr=1e-7))
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/dpo", micro_batch_size=2))


def _pair(rec: Record, tokenizer, max_len: int) -> tuple[Example, Example]:
    prompt = rec.get("prompt", (str, list))
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    out = []
    for side in ("chosen", "rejected"):
        ex = tokenize_chat(tokenizer, messages + [{"role": "assistant", "content": rec.get(side, str)}], rec)
        if len(ex.input_ids) > max_len:
            raise DataError(rec.path, rec.line, side, f"{len(ex.input_ids)} tokens exceed data.max_seq_len={max_len}")
        out.append(ex)
    return out[0], out[1]


def load_pairs(path: str, tokenizer, max_len: int, skip_bad: SkipCounter | None) -> list[tuple[Example, Example]]:
    pairs = []
    for rec in read_jsonl(path, skip_bad=skip_bad):
        try:
            pairs.append(_pair(rec, tokenizer, max_len))
        except DataError as err:
            reject(err, skip_bad)
    return pairs


def _sequence_logps(session: TrainSession, model, examples: list[Example] | None, grad: bool,
                    with_counts: bool = False):
    """Sum of response-token log-probs per example (one example per row; None: the idle-rank pass), and with
    ``with_counts`` the number of response tokens of each."""
    x = session.batch([[e] for e in examples] if examples else None)
    with torch.set_grad_enabled(grad):
        logp = model(x["input_ids"], lambda h, w, b: lk.linear_token_logprobs(h, w, x["targets"], bias=b),
                     attention_mask=x["attention_mask"], position_ids=x["position_ids"])
    sums = (logp * x["loss_mask"]).sum(-1)
    return (sums, x["loss_mask"].sum(-1)) if with_counts else sums


def reference_key(cfg: DPOConfig, pairs) -> str:
    """What the reference log-probs depend on: the initial model's weights and the tokenised pairs."""
    from libra.models.checks import weights_fingerprint

    h = hashlib.sha256(weights_fingerprint(cfg.model.path).encode())
    for chosen, rejected in pairs:
        for ex in (chosen, rejected):
            h.update(json.dumps([ex.input_ids, ex.loss_mask]).encode())
    return h.hexdigest()[:24]


def reference_logps(session: TrainSession, pairs, micro: int, key: str) -> list[tuple[float, float]]:
    """(chosen, rejected) reference log-probs of every pair; computed by the initial model, each rank a
    contiguous share, gathered, and cached in the run directory under ``key`` (``reference_key``)."""
    path = session.out / "reference_logps.json"
    cached = json.loads(path.read_text()) if path.is_file() else None
    if isinstance(cached, dict) and cached.get("key") == key and len(cached.get("logps", ())) == len(pairs):
        if session.world.is_main:
            print(f"reference log-probs: reused {path} (key {key})", flush=True)
        return [tuple(v) for v in cached["logps"]]
    if session.step > 0:
        why = "is missing" if cached is None else "was computed for other pairs or another initial model"
        raise RuntimeError(f"{path} {why}, but the run has already trained: the reference is lost; start a new run "
                           "directory")
    if cached is not None and session.world.is_main:
        print(f"reference log-probs: {path} belongs to other pairs or another initial model; recomputing", flush=True)
    world = session.world
    share = -(-len(pairs) // world.world_size)
    mine = pairs[world.rank * share:(world.rank + 1) * share]
    values: list[tuple[float, float]] = []
    session.model.eval()
    for i in range(session.passes(-(-len(mine) // micro))):
        real = mine[i * micro:(i + 1) * micro]  # an idle rank makes a pass to match collectives
        logps = _sequence_logps(session, session.model, [e for p in real for e in p], grad=False)
        values += [(float(logps[2 * j]), float(logps[2 * j + 1])) for j in range(len(real))]
    gathered: list = [None] * world.world_size
    dist.all_gather_object(gathered, values)
    result = [v for part in gathered for v in part]
    if world.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "pairs": len(result), "logps": result}))
        tmp.replace(path)
    return result


def train_dpo(cfg: DPOConfig) -> None:
    tokenizer = load_tokenizer(cfg)
    pairs = load_pairs(cfg.data.train, tokenizer, cfg.data.max_seq_len, SkipCounter() if cfg.data.skip_bad else None)
    batch = cfg.run.global_batch_size
    if len(pairs) < batch:
        raise ConfigError(cfg.data.train, "run.global_batch_size", f"{len(pairs)} usable pairs, fewer than {batch}")
    total = (len(pairs) // batch) * cfg.data.epochs
    total = min(total, cfg.run.max_steps) if cfg.run.max_steps else total
    key = reference_key(cfg, pairs)
    with TrainSession(cfg, total_steps=total, desc="dpo", tokenizer=tokenizer) as session:
        world, model, micro = session.world, session.model, cfg.run.micro_batch_size
        ref = reference_logps(session, pairs, micro, key)
        model.train()
        while not session.done:
            t0 = time.perf_counter()
            chosen_idx = step_indices(session.step, len(pairs), batch, cfg.run.seed)[world.rank::world.world_size]
            n = session.passes(-(-len(chosen_idx) // micro))
            # loss, margin, accuracy, chosen reward, chosen and rejected log-prob change from the reference, NLL
            sums = torch.zeros(7, dtype=torch.float64)
            for i in range(n):
                session.sync_gradients(i == n - 1)
                idx = chosen_idx[i * micro:(i + 1) * micro]
                rows = [e for j in idx for e in pairs[j]] or [Example([session.pad], [0])] * 2  # idle: 1 pair
                logps, counts = _sequence_logps(session, model, rows, grad=True, with_counts=True)
                logps, counts = logps.view(-1, 2), counts.view(-1, 2)
                ref_t = torch.tensor([ref[j] for j in idx] or [(0.0, 0.0)], device=world.device)
                change = logps - ref_t
                rewards = cfg.beta * change
                margin = rewards[:, 0] - rewards[:, 1]
                nll = -logps[:, 0] / counts[:, 0].clamp(min=1)
                losses = (-F.logsigmoid(margin) + cfg.nll_coef * nll) * (1.0 if idx else 0.0)
                (losses.sum() * world.world_size / batch).backward()
                if idx:
                    losses, margin, rewards, change = (t.detach() for t in (losses, margin, rewards, change))
                    sums += torch.tensor([float(losses.sum()), float(margin.sum()), float((margin > 0).sum()),
                                          float(rewards[:, 0].sum()), float(change[:, 0].sum()),
                                          float(change[:, 1].sum()), float(nll.detach().sum())], dtype=torch.float64)
            stats = session.optimizer_step()
            loss, margin, acc, chosen, chosen_change, rejected_change, nll = session.global_sum(*sums.tolist())
            session.logger.log(session.step, {"loss": loss / batch, "margin": margin / batch,
                                              "pair_accuracy": acc / batch, "chosen_reward": chosen / batch,
                                              "chosen_logp_change": chosen_change / batch,
                                              "rejected_logp_change": rejected_change / batch,
                                              "chosen_nll": nll / batch, **stats,
                                              "time_step": time.perf_counter() - t0})
            session.maybe_save({"pairs": len(pairs)})
        session.finish({"pairs": len(pairs)})
